"""Graph passes over LCE's output: exact ones on by default, lossy ones opt-in.

Passes run in a fixed order, each over the graph IR, and each reports a
:class:`PassStats`::

    1. fold_sign_scale   exact   batch-norm MUL/ADD before each sign -> one threshold ADD
    2. float_weights     lossy   fp16 or per-channel int8 storage of float weights
    3. cleanup           exact   dead ops/tensors/buffers, shared identical constants

Example:
    >>> from bnnconvert.passes import OptimizeOptions, optimize
    >>> smaller, stats = optimize(flatbuffer, OptimizeOptions(float_weights="fp16"))
    >>> [(s.name, s.ops_removed, s.bytes_saved) for s in stats]

Full int8 for the float layers happens before conversion, in the Keras graph
(:mod:`bnnconvert.passes.int8_activations`), because LCE's converter is what
turns calibrated fake-quant ranges into int8 kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bnnconvert import ir
from bnnconvert.errors import UsageProblem
from bnnconvert.passes import cleanup, float_weights, fold_sign_scale
from bnnconvert.passes.float_weights import MODES
from bnnconvert.passes.stats import PassStats

__all__ = ["MODES", "OptimizeOptions", "PassStats", "optimize"]


@dataclass(frozen=True)
class OptimizeOptions:
    """Which passes run. Defaults: the exact passes only.

    Arguments:
        fold_sign_scale: fold the affine ops before each sign (exact).
        float_weights: "fp32" (unchanged), "fp16" or "int8" (lossy).
        cleanup: remove dead ops/tensors/buffers and share identical constants (exact).
    """

    fold_sign_scale: bool = True
    float_weights: str = "fp32"
    cleanup: bool = True

    def __post_init__(self) -> None:
        if self.float_weights not in MODES:
            raise UsageProblem(
                f"Expected --float-weights to be one of {', '.join(MODES)}, "
                f"got {self.float_weights!r}"
            )

    def passes(self) -> list[Callable[[ir.Model], PassStats]]:
        """The enabled passes, in their fixed order."""
        chosen: list[Callable[[ir.Model], PassStats]] = []
        if self.fold_sign_scale:
            chosen.append(fold_sign_scale.fold_sign_scale)
        if self.float_weights == "fp16":
            chosen.append(float_weights.to_fp16)
        elif self.float_weights == "int8":
            chosen.append(float_weights.to_int8)
        if self.cleanup:
            chosen.append(cleanup.cleanup)
        return chosen


def optimize(
    flatbuffer: bytes, options: OptimizeOptions | None = None
) -> tuple[bytes, list[PassStats]]:
    """Run the enabled passes over a TFLite flatbuffer.

    Returns:
        The rewritten flatbuffer and one :class:`PassStats` per pass run, with
        the model size before and after it.

    Raises:
        FlatbufferProblem: if ``flatbuffer`` is not a valid TFLite model.
    """
    options = options or OptimizeOptions()
    model = ir.read(flatbuffer)
    data = bytes(flatbuffer)
    size = len(data)
    stats = []
    for run in options.passes():
        result = run(model)
        data = ir.write(model)
        result.bytes_before, result.bytes_after = size, len(data)
        size = len(data)
        stats.append(result)
    return data, stats
