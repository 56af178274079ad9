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

import fcntl
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
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


def keras_batches(model: Any, x: np.ndarray, batch: int = 16) -> Iterator[list[np.ndarray]]:
    """The Keras model's outputs on ``x``, batch by batch: one ``(B, *shape)`` float32 array
    per output for each ``batch`` samples, in order (one traced graph for all)."""
    tf = _tf.tensorflow()
    call = tf.function(lambda a: model(a, training=False))
    for i in range(0, len(x), batch):
        out = call(x[i : i + batch])
        out = out if isinstance(out, (list, tuple)) else [out]
        yield [np.asarray(o, dtype=np.float32) for o in out]


def keras_predict(model: Any, x: np.ndarray, batch: int = 16) -> list[np.ndarray]:
    """The Keras model's outputs on ``x``, one ``(N, *shape)`` float32 array per output."""
    return [np.concatenate(column) for column in zip(*keras_batches(model, x, batch), strict=True)]


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
    """The LCE interpreter over every sample: worker processes and this process share the work.

    The interpreter predicts one sample at a time and holds the GIL, so using
    more than one core means processes. Forked children cannot use LCE's
    Python wrapper (its pybind11 NumPy types break across ``fork``) and
    ``spawn`` would re-run the caller's script, so each worker is a fresh
    ``python -c`` process. Workers start when the run is entered, so the
    caller's own work (running Keras, localizing) overlaps with them.

    Samples are handed out one at a time from a counter file under an
    exclusive ``flock`` (:func:`claim`), in index order, to the workers and
    to this process alike (:meth:`run_here`), so no core idles while samples
    are left. Each finished sample's outputs are written to ``<i>.npz``
    (atomically) and announced by a line on the worker's stdout; :meth:`wait`
    collects them as they arrive, so the caller can compare early samples
    before the late ones are done.

    Arguments:
        flatbuffer: the model's bytes.
        fb_model: the same model, read (for its input/output quantization).
        x: float32 inputs ``(N, *input_shape)``.
        kernel: a :data:`KERNELS` name.
        workers: worker processes (default :func:`default_workers`); 0 runs every
            sample in this process.
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
        self._folder: Path | None = None  # made on entering
        self.procs: list[subprocess.Popen[bytes]] = []
        self.selector: selectors.BaseSelector | None = None
        self.outputs: dict[int, list[np.ndarray]] = {}
        self._unread: list[bytes] = []  # per worker: the start of a line not yet complete
        self.here: Any = None  # this process's interpreter, made on first use

    def __enter__(self) -> InterpreterRun:
        self._folder = Path(tempfile.mkdtemp(prefix="bnnconvert-validate-"))
        (self.folder / "next").write_bytes((0).to_bytes(8, "little"))
        if self.workers < 1 or len(self.x) < _PARALLEL_MIN_SAMPLES:
            return self
        (self.folder / "model.tflite").write_bytes(self.flatbuffer)
        np.save(self.folder / "inputs.npy", self.x)
        self.selector = selectors.DefaultSelector()
        for k in range(self.workers):
            with (self.folder / f"stderr{k}").open("wb") as stderr:
                command = [sys.executable, "-c", _WORKER_CODE, str(self.folder), self.kernel]
                proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
            self.procs.append(proc)
            assert proc.stdout is not None
            self.selector.register(proc.stdout.fileno(), selectors.EVENT_READ, k)
            self._unread.append(b"")
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        if self.selector is not None:
            self.selector.close()
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)

    @property
    def folder(self) -> Path:
        """The run's temporary folder (model, inputs, counter, outputs); exists once entered."""
        if self._folder is None:
            raise RuntimeError("InterpreterRun is used as a context manager: enter it first")
        return self._folder

    @property
    def finished(self) -> bool:
        """Whether every sample's outputs are in."""
        return len(self.outputs) == len(self.x)

    def sample(self, i: int) -> list[np.ndarray]:
        """Sample ``i``'s outputs (float32, dequantized, ``(1, *shape)`` each); it must be in."""
        return self.outputs[i]

    def may_run_here(self) -> bool:
        """Whether this process should interpret samples too.

        Yes when there are no workers, or when TensorFlow is already imported
        here (LCE's Python interpreter imports it: then it costs nothing more).
        """
        return not self.procs or "tensorflow" in sys.modules

    def run_here(self) -> int | None:
        """Claim the next sample and run it in this process; its index, or None if none is left.

        Uses :func:`bnnconvert._tf.lce_interpreter` (LCE's package, which imports TensorFlow).
        """
        with (self.folder / "next").open("r+b") as handle:
            i = claim(handle, len(self.x))
        if i is None:
            return None
        if self.here is None:
            self.here = _tf.lce_interpreter(self.flatbuffer, **KERNELS[self.kernel])
        self._arrived(i, _as_list(self.here.predict(self.x[i : i + 1])))
        return i

    def wait(self, timeout: float | None = None) -> list[int]:
        """Samples the workers finished since the last call (waiting up to ``timeout`` s).

        Raises:
            FlatbufferProblem: the interpreter failed in a worker process, or (with
                ``timeout`` None) no worker is left to finish the missing samples.
        """
        if self.selector is None or not self.selector.get_map():
            if timeout is None and not self.finished:
                raise FlatbufferProblem(
                    "LCE's interpreter workers stopped before every sample was run"
                )
            return []
        arrived = []
        for key, _ in self.selector.select(timeout):
            k = key.data
            # Everything the worker has written: a buffered readline() would leave
            # lines in its buffer, which select() does not see.
            chunk = os.read(key.fd, 1 << 16)
            if not chunk:
                self.selector.unregister(key.fd)
                self._check_exit(k)
                continue
            *lines, self._unread[k] = (self._unread[k] + chunk).split(b"\n")
            for line in lines:
                i = int(line)
                with np.load(self.folder / f"{i}.npz") as saved:
                    self._arrived(i, [saved[f"arr_{j}"] for j in range(len(saved.files))])
                arrived.append(i)
        return arrived

    def result(self, *, help_here: bool | None = None) -> list[np.ndarray]:
        """One float32 array ``(N, *shape)`` per flatbuffer output, in the graph's order.

        Arguments:
            help_here: run samples in this process too while any are left
                (default: :meth:`may_run_here`).

        Raises:
            FlatbufferProblem: the interpreter failed (in a worker process or here).
        """
        if help_here is None or not self.procs:
            help_here = self.may_run_here()
        while help_here and self.run_here() is not None:
            self.wait(0)
        while not self.finished:
            self.wait(None)
        return _stack([self.outputs[i] for i in range(len(self.x))])

    def _arrived(self, i: int, outputs: list[np.ndarray]) -> None:
        self.outputs[i] = _dequantized(self.fb_model, outputs)
        self.report(len(self.outputs), len(self.x))

    def _check_exit(self, k: int) -> None:
        """Raise the cause when worker ``k`` failed (TFLite's ERROR: lines, else its last line)."""
        if self.procs[k].wait() == 0:
            return
        printed = (self.folder / f"stderr{k}").read_text(errors="replace")
        detail = tflite_errors.explain(printed, binary=False) if printed.strip() else ""
        raise FlatbufferProblem(
            "LCE's interpreter failed on the model in a worker process: "
            f"{detail or f'exit code {self.procs[k].returncode}'}"
        )


def claim(handle: Any, n: int) -> int | None:
    """Take the next sample index from the counter file open in ``handle`` (None past ``n``).

    An exclusive ``flock`` makes the read-and-increment atomic across processes.
    """
    fcntl.flock(handle, fcntl.LOCK_EX)
    try:
        handle.seek(0)
        i = int.from_bytes(handle.read(8), "little")
        if i >= n:
            return None
        handle.seek(0)
        handle.write((i + 1).to_bytes(8, "little"))
        handle.flush()
        return i
    finally:
        fcntl.flock(handle, fcntl.LOCK_UN)


def _as_list(out: Any) -> list[np.ndarray]:
    return [np.asarray(o) for o in out] if isinstance(out, (list, tuple)) else [np.asarray(out)]


def _stack(samples: list[list[np.ndarray]]) -> list[np.ndarray]:
    """Per-sample output lists -> one ``(N, *shape)`` array per output."""
    return [np.concatenate(column) for column in zip(*samples, strict=True)]


def worker_main(folder: str, kernel: str) -> None:
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
    x = np.load(base / "inputs.npy", mmap_mode="r")
    options = KERNELS[kernel]
    interpreter = load_interpreter_module().LiteInterpreter(
        (base / "model.tflite").read_bytes(),
        1,  # threads: LCE's x86 binary kernels are single-threaded
        options.get("use_reference_bconv", False),
        options.get("use_indirect_bgemm", False),
        False,  # no XNNPACK delegate, as in the parent
    )
    with (base / "next").open("r+b") as counter:
        while (i := claim(counter, len(x))) is not None:
            outputs = _as_list(interpreter.predict([np.ascontiguousarray(x[i : i + 1])]))
            written = base / f"{i}.part.npz"
            np.savez(written, *outputs)
            os.replace(written, base / f"{i}.npz")
            sys.stdout.write(f"{i}\n")
            sys.stdout.flush()


_WORKER_CODE = (
    "import sys; from bnnconvert.validation.runner import worker_main; worker_main(*sys.argv[1:])"
)
