"""Running both sides: Keras in this process, LCE's interpreter in worker processes.

Keras runs in this process (all cores, batches of 16) while LCE's interpreter
runs in worker processes that load its compiled extension without TensorFlow
(:func:`default_workers`: one per CPU but one). Both return one array per
model output, ``(N, *shape)``; the interpreter's are in the flatbuffer's
output order, Keras's in the Keras model's (:mod:`bnnconvert.validation.outputs`
pairs them by name and shape). A model with int8 inputs or outputs is fed
quantized inputs and its outputs are dequantized, each with its tensor's own
parameters (:mod:`bnnconvert.io_quant`).
"""

from __future__ import annotations

import os
import selectors
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert import _tf, io_quant, ir, tflite_errors
from bnnconvert.errors import FlatbufferProblem, UsageProblem

KERNELS = {
    "indirect": {"use_indirect_bgemm": True},
    "reference": {"use_reference_bconv": True},
    "default": {},
}
"""LCE binary kernel name -> interpreter options."""
_PARALLEL_MIN_SAMPLES = 8  # below this, starting worker processes (~0.3 s) is not worth it

Progress = Callable[[int, int], None]


def keras_predict(model: Any, x: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    """The Keras model's outputs on ``x``, one ``(N, *shape)`` float32 array per output."""
    tf = _tf.tensorflow()
    call = tf.function(lambda a: model(a, training=False))
    parts: list[list[np.ndarray]] = []
    for i in range(0, len(x), batch):
        out = call(x[i : i + batch])
        out = out if isinstance(out, (list, tuple)) else [out]
        parts.append([np.asarray(o, dtype=np.float32) for o in out])
    return [np.concatenate(column) for column in zip(*parts, strict=True)]


def default_workers() -> int:
    """Interpreter worker processes by default: one per usable CPU but one (at least one).

    Keras, in this process, is the slower side (BinaryDenseNet28 at 224 px:
    about 12 samples/s on one core against 20 for LCE's indirect kernel), so
    it keeps a core of its own and gets the rest when the workers finish.
    """
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) - 1)


def _dequantized(fb_model: ir.Model, outputs: list[np.ndarray]) -> list[np.ndarray]:
    """Each output as float32, dequantized with its own tensor's parameters if it is int8."""
    graph = fb_model.subgraphs[0]
    result = []
    for index, y in zip(graph.outputs, outputs, strict=True):
        quant = io_quant.tensor_quantization(graph.tensors[index])
        if quant is None:
            result.append(np.asarray(y, dtype=np.float32))
        else:
            real = quant.scale * (np.asarray(y, dtype=np.float64) - quant.zero_point)
            result.append(real.astype(np.float32))
    return result


class InterpreterRun:
    """The LCE interpreter over every sample, in worker processes when that pays.

    The interpreter predicts one sample at a time and holds the GIL, so using
    more than one core means processes. Forked children cannot use LCE's
    Python wrapper (its pybind11 NumPy types break across ``fork``) and
    ``spawn`` would re-run the caller's script, so each worker is a fresh
    ``python -c`` process that reads the model and its share of the inputs
    from a temporary directory, prints one line per finished sample and
    writes its outputs back. Workers start when the run is entered, so the
    caller's Keras run overlaps with them; :meth:`result` gathers the outputs.

    Arguments:
        flatbuffer: the model's bytes.
        fb_model: the same model, read (for its input/output quantization).
        x: float32 inputs ``(N, *input_shape)``.
        kernel: a :data:`KERNELS` name.
        workers: worker processes (default :func:`default_workers`); 0 runs in this process.
        progress: called with (done, total) as samples finish.
    """

    def __init__(
        self,
        flatbuffer: bytes,
        fb_model: ir.Model,
        x: np.ndarray,
        *,
        kernel: str = "indirect",
        workers: int | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.flatbuffer, self.fb_model, self.kernel = flatbuffer, fb_model, kernel
        self.x = io_quant.quantize_inputs(fb_model, x)
        if workers is None:
            workers = default_workers()
        if workers < 0:
            raise UsageProblem(f"Expected a worker count of at least 0, got {workers}")
        self.workers = min(workers, len(x))
        self.report = progress or (lambda done, total: None)
        self.folder: Path | None = None
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def __enter__(self) -> InterpreterRun:
        n = len(self.x)
        if self.workers < 1 or n < _PARALLEL_MIN_SAMPLES:
            return self
        self.folder = Path(tempfile.mkdtemp(prefix="bnnconvert-validate-"))
        (self.folder / "model.tflite").write_bytes(self.flatbuffer)
        bounds = np.linspace(0, n, self.workers + 1).astype(int)
        for k in range(self.workers):
            part = self.folder / f"part{k}"
            np.save(part.with_suffix(".in.npy"), self.x[bounds[k] : bounds[k + 1]])
            command = [sys.executable, "-c", _WORKER_CODE, str(self.folder), part.name, self.kernel]
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            self.procs.append((proc, part))
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def result(self) -> list[np.ndarray]:
        """One float32 array ``(N, *shape)`` per flatbuffer output, in the graph's order.

        Raises:
            FlatbufferProblem: the interpreter failed in a worker process.
        """
        if not self.procs:
            interpreter = _tf.lce_interpreter(self.flatbuffer, **KERNELS[self.kernel])
            samples = []
            for i in range(len(self.x)):
                samples.append(_as_list(interpreter.predict(self.x[i : i + 1])))
                self.report(i + 1, len(self.x))
            return _dequantized(self.fb_model, _stack(samples))
        self._wait_for_workers()
        parts = []
        for proc, part in self.procs:
            assert proc.stderr is not None
            printed = proc.stderr.read().decode(errors="replace")
            if proc.wait() != 0:  # the cause from TFLite's ERROR: lines, else the last line
                detail = tflite_errors.explain(printed, binary=False) if printed.strip() else ""
                raise FlatbufferProblem(
                    "LCE's interpreter failed on the model in a worker process: "
                    f"{detail or f'exit code {proc.returncode}'}"
                )
            with np.load(part.with_suffix(".out.npz")) as saved:
                parts.append([saved[f"out{i}"] for i in range(len(saved.files))])
        joined = [np.concatenate(column) for column in zip(*parts, strict=True)]
        return _dequantized(self.fb_model, joined)

    def _wait_for_workers(self) -> None:
        done, n = 0, len(self.x)
        with selectors.DefaultSelector() as selector:
            for proc, _ in self.procs:
                assert proc.stdout is not None
                selector.register(proc.stdout, selectors.EVENT_READ)
            open_pipes = len(self.procs)
            while open_pipes:
                for key, _ in selector.select():
                    line = key.fileobj.readline()  # type: ignore[union-attr]
                    if not line:
                        selector.unregister(key.fileobj)
                        open_pipes -= 1
                        continue
                    done += 1
                    self.report(done, n)


def _as_list(out: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def _stack(samples: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-sample output lists -> one ``(N, *shape)`` array per output."""
    return [np.concatenate(column) for column in zip(*samples, strict=True)]


def worker_main(folder: str, part: str, kernel: str) -> None:
    """Body of an interpreter worker process (see :class:`InterpreterRun`).

    The worker loads LCE's compiled interpreter extension directly
    (:func:`bnnconvert.devices.runner.load_interpreter_module`, about 30 ms)
    instead of through ``larq_compute_engine``'s package, whose ``__init__``
    imports TensorFlow (about 5 s per worker, which used to cost more than the
    worker saved). The parent keeps :func:`bnnconvert._tf.lce_interpreter`:
    TensorFlow is loaded there anyway, and loading the same pybind11
    extension a second time under another module name is not safe.
    """
    from bnnconvert.devices.runner import load_interpreter_module

    base = Path(folder)
    x = np.load(base / f"{part}.in.npy")
    options = KERNELS[kernel]
    interpreter = load_interpreter_module().LiteInterpreter(
        (base / "model.tflite").read_bytes(),
        1,  # threads: LCE's x86 binary kernels are single-threaded
        options.get("use_reference_bconv", False),
        options.get("use_indirect_bgemm", False),
        False,  # no XNNPACK delegate, as in the parent
    )
    samples = []
    for i in range(len(x)):
        samples.append(_as_list(interpreter.predict([x[i : i + 1]])))
        sys.stdout.write("1\n")
        sys.stdout.flush()
    outputs = _stack(samples)
    np.savez(base / f"{part}.out.npz", **{f"out{i}": o for i, o in enumerate(outputs)})


_WORKER_CODE = (
    "import sys; from bnnconvert.validation.runner import worker_main; worker_main(*sys.argv[1:])"
)
