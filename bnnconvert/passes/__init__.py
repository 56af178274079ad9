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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bnnconvert import ir
from bnnconvert.errors import UsageProblem
from bnnconvert.passes import cleanup, float_weights, fold_sign_scale
from bnnconvert.passes.float_weights import MODES
from bnnconvert.passes.stats import PassStats

__all__ = ["MODES", "OptimizeOptions", "PassStats", "int8_float_layers", "optimize"]


@dataclass(frozen=True)
class OptimizeOptions:
    """Which passes run. Defaults: the exact passes only.

    Arguments:
        fold_sign_scale: fold the affine ops before each sign (exact).
        float_weights: "fp32" (unchanged), "fp16" or "int8" (lossy).
        cleanup: remove dead ops/tensors/buffers and share identical constants (exact).
        int8_activations: full int8 float layers from calibrated ranges (lossy;
            applied to the Keras model before conversion, see :func:`int8_float_layers`).
        calibration: ``.npz`` with calibration inputs ``x`` for ``int8_activations``.
    """

    fold_sign_scale: bool = True
    float_weights: str = "fp32"
    cleanup: bool = True
    int8_activations: bool = False
    calibration: Path | None = None

    def __post_init__(self) -> None:
        if self.float_weights not in MODES:
            raise UsageProblem(
                f"Expected float_weights= to be one of {', '.join(MODES)}, "
                f"got {self.float_weights!r}"
            )
        if self.calibration is not None and not self.int8_activations:
            raise UsageProblem(
                "Expected calibration= only together with int8_activations=; add it or drop "
                "calibration="
            )

    @property
    def lossy(self) -> bool:
        """Whether any lossy option is on (outputs then differ from Keras by design)."""
        return self.float_weights != "fp32" or self.int8_activations

    def with_raw_output(self) -> OptimizeOptions:
        """These options with every pass off (``--no-optimize``): LCE's output as it is.

        Raises:
            UsageProblem: ``--no-optimize`` combined with a lossy option.
        """
        if self.lossy:
            raise UsageProblem(
                "Expected --no-optimize alone: it keeps LCE's output as it is, so it cannot "
                "be combined with --float-weights fp16/int8 or --int8-activations"
            )
        return replace(self, fold_sign_scale=False, cleanup=False)

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


def int8_float_layers(
    keras_model: Any,
    options: OptimizeOptions,
    fallback_calibration: Path | None,
    *,
    int8_input: bool = False,
    int8_output: bool = False,
) -> tuple[Any, PassStats]:
    """Apply ``int8_activations`` to a Keras model before conversion.

    Calibrates on ``options.calibration``, else on ``fallback_calibration``
    (e.g. the test split shipped beside a checkpoint). ``int8_input`` /
    ``int8_output`` also put fake-quant nodes at the graph's edges where
    needed, for ``--input-type int8`` / ``--output-type int8``.

    Raises:
        UsageProblem: no calibration data, or data of the wrong shape.
    """
    from bnnconvert.passes import int8_activations

    path = options.calibration or fallback_calibration
    if path is None:
        raise UsageProblem(
            "Expected calibration= with int8_activations=: an .npz with inputs 'x', "
            "preprocessed like the model's; this checkpoint ships no test split to use instead"
        )
    x = int8_activations.load_calibration(path, tuple(keras_model.input_shape[1:]))
    rebuilt, stats = int8_activations.with_int8_float_layers(
        keras_model, x, int8_input=int8_input, int8_output=int8_output
    )
    stats.details["calibration"] = str(path)
    return rebuilt, stats


def optimize(
    flatbuffer: bytes, options: OptimizeOptions | None = None
) -> tuple[bytes, list[PassStats]]:
    """Run the enabled passes over a TFLite flatbuffer.

    Sizes are measured on bnnconvert's own serialization before and after each
    pass, so a pass is credited only with what it changed: one that rewrote
    nothing reports the same size before and after (LCE's writer lays out the
    same graph differently; that difference is nobody's saving). Dead weight
    a pass leaves behind (constants only the ops it replaced read) counts
    against that pass, as if dropped at once, not for ``cleanup``, which is
    credited with the dead code it found in the input, the dead ops it
    removes and the constants it shares. So with ``cleanup`` off, the last
    pass's ``bytes_after`` leaves out dead weight the output still holds.

    Returns:
        The rewritten flatbuffer (``flatbuffer`` itself if no pass is enabled)
        and one :class:`PassStats` per pass run, with the model size in bytes
        before and after it.

    Raises:
        FlatbufferProblem: if ``flatbuffer`` is not a valid TFLite model.
    """
    options = options or OptimizeOptions()
    chosen = options.passes()
    if not chosen:
        return bytes(flatbuffer), []
    model = ir.read(flatbuffer)
    data = ir.write(model)
    dead = len(data) - cleanup.live_size(model)
    credited = 0  # bytes of ``dead`` already counted against the pass that left them
    stats = []
    for run in chosen:
        result = run(model)
        before, data = data, ir.write(model)
        dead_before = dead
        if data != before:
            dead = len(data) - cleanup.live_size(model)
        result.bytes_before = len(before) - credited
        credited = min(dead, max(0, credited + dead - dead_before))
        result.bytes_after = len(data) - credited
        stats.append(result)
    return data, stats
