"""ONNX Runtime on the original ONNX file, as the end-to-end reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
        self._session = None

    def _run(self, x_nchw: np.ndarray) -> np.ndarray:
        import onnxruntime

        if self._session is None:
            options = onnxruntime.SessionOptions()
            options.log_severity_level = 3
            try:
                self._session = onnxruntime.InferenceSession(
                    str(self.path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as e:
                first = str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)
                raise OnnxProblem(f"{self.path}: ONNX Runtime cannot run it: {first}") from e
        session = self._session
        name = session.get_inputs()[0].name
        fixed = session.get_inputs()[0].shape[0]
        step = fixed if isinstance(fixed, int) and fixed > 0 else self.batch
        parts = [
            session.run(None, {name: x_nchw[i : i + step]})[0] for i in range(0, len(x_nchw), step)
        ]
        return np.concatenate(parts)

    def __call__(self, x_nhwc: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(np.asarray(x_nhwc, np.float32).transpose(0, 3, 1, 2))
        y = self._run(x)
        return y.transpose(0, 2, 3, 1) if y.ndim == 4 else y
