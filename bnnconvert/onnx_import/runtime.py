"""ONNX Runtime on the original ONNX file, as the end-to-end reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert.errors import first_line
from bnnconvert.onnx_import.errors import OnnxProblem


class OnnxRuntimeReference:
    """Call with NHWC float32 inputs ``(N, H, W, C)``; returns the model's output for them.

    A 4-D (NCHW) output is returned as NHWC, as the converted model gives it.

    The session is created on first use (CPU, standard ops only; the file was
    checked by :func:`bnnconvert.onnx_import.reading.read_checked`).
    """

    def __init__(self, path: Path, batch: int = 32) -> None:
        self.path = Path(path)
        self.batch = batch
        self._own_chw: tuple[int, ...] = ()  # the file's (C, H, W), known once opened
        self._sessions: dict[tuple[int, ...], Any] = {}

    def _session(self, chw: tuple[int, ...]) -> Any:
        """The session for ``(C, H, W)`` inputs: the file's own, or one with its input resized.

        An export with ``input_shape=`` converts the graph for another image
        size; ONNX Runtime runs the same graph at that size as its reference.
        """
        if not self._sessions:
            own = self._open(None)
            self._own_chw = tuple(own.get_inputs()[0].shape[1:])
            self._sessions[self._own_chw] = own
        if chw not in self._sessions:
            self._sessions[chw] = self._open(chw)
        return self._sessions[chw]

    def _open(self, chw: tuple[int, ...] | None) -> Any:
        """An ONNX Runtime session on the file, its input set to ``(N, *chw)`` if given."""
        import onnx
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        source: str | bytes = str(self.path)
        if chw is not None:
            model = onnx.load(str(self.path))  # reading.read_checked has checked it
            weights = {t.name for t in model.graph.initializer}
            (image,) = [i for i in model.graph.input if i.name not in weights]
            for dim, size in zip(image.type.tensor_type.shape.dim[1:], chw, strict=True):
                dim.dim_value = size
            del model.graph.value_info[:]  # inferred for the file's own size
            for output in model.graph.output:
                output.type.tensor_type.ClearField("shape")
            source = model.SerializeToString()
        try:
            return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as e:
            if chw is None:
                raise OnnxProblem(
                    f"{self.path}: ONNX Runtime cannot run it: {first_line(e)}"
                ) from e
            raise self._resized_problem(chw, e) from e

    def _resized_problem(self, chw: tuple[int, ...], error: Exception) -> OnnxProblem:
        return OnnxProblem(
            f"{self.path}: ONNX Runtime cannot run it for (C, H, W) inputs {chw} "
            f"({first_line(error)}); validate at its own input size {self._own_chw}"
        )

    def _run(self, x_nchw: np.ndarray) -> np.ndarray:
        chw = tuple(x_nchw.shape[1:])
        session = self._session(chw)
        name = session.get_inputs()[0].name
        fixed = session.get_inputs()[0].shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else self.batch
        try:
            parts = [
                session.run(None, {name: x_nchw[i : i + step]})[0]
                for i in range(0, len(x_nchw), step)
            ]
        except Exception as e:
            if chw == self._own_chw:
                raise
            raise self._resized_problem(chw, e) from e
        return np.concatenate(parts)

    def __call__(self, x_nhwc: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2))
        y = self._run(x)
        return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
