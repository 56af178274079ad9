"""The one error the ONNX front end raises."""

from __future__ import annotations

from bnnconvert.errors import CheckpointProblem


class OnnxProblem(CheckpointProblem):
    """An ONNX file that is malformed, unsafe or uses something we cannot convert (exit 2)."""
