"""Every model output compared: paired by name and shape, never by position.

TFLite may order a model's outputs differently from Keras (a two-output model
came out reversed), so a flatbuffer output is paired with the Keras output
that its signature names; without a signature, with the one Keras output of
the same shape. Each pair is compared on its own (:class:`OutputReport`), and
the verdict on outputs is the union of their failures.

Thresholds (each with its reason):

- Float exports. A converted BNN computes the same function as its Keras
  model, so every sample must have every element within
  ``ATOL + RTOL * max|keras|`` (float32 evaluation order moves outputs by
  ~1e-6 relative; one wrong binary channel moves them by >= 1e-2), and
  top-1 must agree on every sample (:data:`MISMATCH_ALLOWED` and
  :data:`TOP1_DISAGREEMENT_ALLOWED` are 0). Float rounding can flip a sign
  at a near-tie and move a sample further; such a sample is not excused
  here but explained by the per-layer check: only ties there gives
  ``pass (ties)``, anything else fails. (An allowance of 1 % used to let a
  real fault that showed in 3 of 360 samples pass.)
- Lossy exports (fp16 or int8 weights, int8 activations). Outputs move by
  design, so they are judged by what a user ships them for: top-1 may
  differ on at most :data:`LOSSY_TOP1_DISAGREEMENT_ALLOWED` of samples, and
  accuracy (when labels are known) may drop by at most
  :data:`LOSSY_ACCURACY_DROP_ALLOWED`; outputs that are not class scores
  (feature maps) need a cosine of at least :data:`LOSSY_COSINE_MIN`.
  Below 50 samples (100 for accuracy) those allowances round down to no
  sample, so one flipped prediction would fail any lossy export: there, as
  many differing samples as chance gives at the allowed rate
  (:func:`consistent_count`: 3 of 48, 1 of 8) are left :class:`Undecided`
  and the per-layer check decides (``validate._decide_small_sample``); more
  fail.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from bnnconvert import ir

TOP1_DISAGREEMENT_ALLOWED = 0.0
ATOL = 1e-4
RTOL = 1e-3
MISMATCH_ALLOWED = 0.0
# int8 activations in the digits model: 99.2 % top-1 agreement, the same
# accuracy; 2 % leaves room for that on small sets and catches real breakage.
LOSSY_TOP1_DISAGREEMENT_ALLOWED = 0.02
LOSSY_ACCURACY_DROP_ALLOWED = 0.01
LOSSY_COSINE_MIN = 0.99
LOSSY_MIN_SAMPLES_TOP1 = math.ceil(1 / LOSSY_TOP1_DISAGREEMENT_ALLOWED - 1e-9)
"""Samples below which the lossy top-1 allowance is no sample (50)."""
LOSSY_MIN_SAMPLES_ACCURACY = math.ceil(1 / LOSSY_ACCURACY_DROP_ALLOWED - 1e-9)
"""Samples below which the lossy accuracy allowance is no sample (100)."""


@dataclass
class OutputPair:
    """A Keras output and the flatbuffer output that computes it."""

    name: str
    keras_index: int
    flatbuffer_index: int
    matched_by: str  # "name" or "shape"


@dataclass
class Undecided:
    """A lossy export's difference that too few samples cannot judge.

    Its allowance rounds down to no sample at all (top-1 below
    :data:`LOSSY_MIN_SAMPLES_TOP1` samples, accuracy below
    :data:`LOSSY_MIN_SAMPLES_ACCURACY`) and chance explains the count
    (:func:`consistent_count`); ``validate`` lets the per-layer check decide.
    """

    failure: str  # the failure line, if the per-layer check finds a fault or cannot run
    what: str  # "top-1 agreement" or "accuracy"
    counts: str  # e.g. "2 of 48 differ"
    needed: int  # samples at which the allowance is one sample


@dataclass
class OutputReport:
    """How one output compares: error statistics and, for class scores, agreement."""

    name: str
    shape: list[int]
    max_abs_error: float
    max_rel_error: float
    cosine_min: float
    cosine_mean: float
    samples_within_tolerance: float
    top1_agreement: float | None = None
    top5_agreement: float | None = None
    keras_accuracy: float | None = None
    flatbuffer_accuracy: float | None = None
    failures: list[str] = field(default_factory=list)
    mismatched: list[int] = field(default_factory=list)
    farthest: int | None = None  # the mismatched sample with the lowest cosine
    undecided: list[Undecided] = field(default_factory=list)

    @property
    def is_class_scores(self) -> bool:
        return self.top1_agreement is not None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["mismatched"], data["farthest"], data["undecided"]
        return data


def _compatible(keras_shape: tuple[Any, ...], shape: tuple[int, ...]) -> bool:
    """Whether a Keras shape (``None`` for dynamic dims) admits a static one."""
    return len(keras_shape) == len(shape) and all(
        k is None or k == s for k, s in zip(keras_shape, shape, strict=True)
    )


def pair_outputs(
    keras_names: list[str], keras_shapes: list[tuple[Any, ...]], fb_model: ir.Model
) -> tuple[list[OutputPair], list[str]]:
    """Pair Keras outputs with flatbuffer outputs by signature name, else by unique shape.

    Arguments:
        keras_names: the Keras model's ``output_names``.
        keras_shapes: their shapes without the batch axis (``None`` for dynamic dims).
        fb_model: the flatbuffer's graph.

    Returns:
        The pairs, in Keras order, and one line per output that could not be paired.
    """
    graph = fb_model.subgraphs[0]
    position = {tensor: i for i, tensor in enumerate(graph.outputs)}
    by_name: dict[str, int] = {}
    for signature in fb_model.signature_defs[:1]:
        by_name = {n: position[t] for n, t in signature.outputs.items() if t in position}
    shapes = [tuple(graph.tensors[t].shape[1:]) for t in graph.outputs]
    pairs: list[OutputPair] = []
    unpaired: list[str] = []
    taken: set[int] = set()
    for k, (name, shape) in enumerate(zip(keras_names, keras_shapes, strict=True)):
        f = by_name.get(name)
        if f is not None and _compatible(shape, shapes[f]):
            pairs.append(OutputPair(name, k, f, "name"))
            taken.add(f)
    open_keras = [k for k in range(len(keras_names)) if all(p.keras_index != k for p in pairs)]
    for k in open_keras:
        name, shape = keras_names[k], keras_shapes[k]
        fits = [f for f in range(len(shapes)) if f not in taken and _compatible(shape, shapes[f])]
        rivals = [j for j in open_keras if fits and _compatible(keras_shapes[j], shapes[fits[0]])]
        if len(fits) == 1 and len(rivals) == 1:
            pairs.append(OutputPair(name, k, fits[0], "shape"))
            taken.add(fits[0])
        else:
            why = "no flatbuffer output has its shape" if not fits else "its shape is ambiguous"
            unpaired.append(f"output {name} {_shape(shape)} not compared: {why}")
    pairs.sort(key=lambda p: p.keras_index)
    return pairs, unpaired


def _shape(shape: tuple[Any, ...]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine of two ``(N, -1)`` arrays (1 where either is all zeros)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    dots = (a64 * b64).sum(axis=1)
    return np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)


def within_tolerance(keras: np.ndarray, ours: np.ndarray) -> np.ndarray:
    """Per sample: every element within ``ATOL + RTOL * max|keras|`` of that sample."""
    a, b = keras.reshape(len(keras), -1), ours.reshape(len(ours), -1)
    scale = np.abs(a).max(axis=1) if a.size else np.zeros(len(a))
    return np.abs(a - b).max(axis=1, initial=0.0) <= ATOL + RTOL * scale


def compare_output(
    name: str,
    keras: np.ndarray,
    ours: np.ndarray,
    labels: np.ndarray | None,
    *,
    lossy: bool,
) -> OutputReport:
    """Statistics and failures of one output pair (arrays ``(N, *shape)``)."""
    n = len(keras)
    a = keras.reshape(n, -1).astype(np.float64)
    b = ours.reshape(n, -1).astype(np.float64)
    finite = bool(np.all(np.isfinite(b)))
    diff = np.abs(a - b) if finite else np.full_like(a, np.inf)
    max_abs = float(diff.max()) if diff.size else 0.0
    scale = float(np.abs(a).max()) if a.size else 0.0
    cos = _cosine(a, b) if finite else np.zeros(n)
    within = within_tolerance(a, b) if finite else np.zeros(n, dtype=bool)
    report = OutputReport(
        name=name,
        shape=list(keras.shape[1:]),
        max_abs_error=max_abs,
        max_rel_error=max_abs / max(scale, 1e-12),
        cosine_min=float(cos.min()) if n else 1.0,
        cosine_mean=float(cos.mean()) if n else 1.0,
        samples_within_tolerance=float(within.mean()) if n else 1.0,
        mismatched=[int(i) for i in np.flatnonzero(~within)],
    )
    if report.mismatched:
        report.farthest = report.mismatched[int(np.argmin(cos[report.mismatched]))]
    if keras.ndim == 2 and keras.shape[1] > 1:
        _class_agreement(report, a, b, labels)
    allowed = LOSSY_TOP1_DISAGREEMENT_ALLOWED if lossy else TOP1_DISAGREEMENT_ALLOWED
    if report.top1_agreement is not None:
        allowed_n = math.floor(allowed * n)
        differ = round((1 - report.top1_agreement) * n)
        if differ > allowed_n:
            failure = (
                f"top-1 agreement {report.top1_agreement:.2%} "
                f"(at most {allowed_n} of {n} may differ)"
            )
            likely = consistent_count(n, allowed) if lossy and allowed_n == 0 else allowed_n
            if differ <= likely:
                counts = f"{differ} of {n} differ"
                needed = LOSSY_MIN_SAMPLES_TOP1
                report.undecided.append(Undecided(failure, "top-1 agreement", counts, needed))
            else:
                report.failures.append(
                    f"top-1 agreement {report.top1_agreement:.2%} "
                    f"(at most {likely} of {n} may differ)"
                )
    if not finite:
        report.failures.append("the flatbuffer's output holds inf or NaN")
    elif lossy:
        _lossy_failures(report, n)
    else:
        allowed_n = math.floor(MISMATCH_ALLOWED * n)
        if len(report.mismatched) > allowed_n:
            report.failures.append(
                f"samples within tolerance {report.samples_within_tolerance:.2%} (atol {ATOL}, "
                f"rtol {RTOL}; at most {allowed_n} of {n} may differ)"
            )
    return report


def _class_agreement(
    report: OutputReport, a: np.ndarray, b: np.ndarray, labels: np.ndarray | None
) -> None:
    top1_k, top1_f = a.argmax(1), b.argmax(1)
    report.top1_agreement = float(np.mean(top1_k == top1_f))
    if a.shape[1] > 5:
        report.top5_agreement = float(np.mean(_top5_agree(a, b)))
    if labels is not None:
        report.keras_accuracy = float(np.mean(top1_k == labels))
        report.flatbuffer_accuracy = float(np.mean(top1_f == labels))


def _top5_agree(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per sample: ``a``'s top-1 class is among ``b``'s top 5 (ties in ``b`` count for it).

    The usual top-5 measure, with the reference's top class as the label: so
    it is never below top-1 agreement. Quantized scores tie (many int8
    probabilities are exactly 0), so a class is in the top 5 when fewer than
    5 classes score strictly higher; an arbitrary pick among tied classes is
    not a disagreement.
    """
    reference_top = np.take_along_axis(b, a.argmax(1)[:, None], axis=1)
    return (b > reference_top).sum(axis=1) < 5


def consistent_count(n: int, rate: float, significance: float = 0.05) -> int:
    """The most of ``n`` samples that may differ at a true rate of ``rate``, by chance.

    The largest k with P(X >= k) >= ``significance`` for X ~ Binomial(n, rate):
    more than that is unlikely (one-sided) if the export's real disagreement
    is within ``rate``. E.g. 3 of 48 and 1 of 8 at 2 %.
    """
    cdf = 0.0
    for k in range(n + 1):
        cdf += math.comb(n, k) * rate**k * (1 - rate) ** (n - k)
        if 1 - cdf < significance:
            return k
    return n


def _lossy_failures(report: OutputReport, n: int) -> None:
    if report.keras_accuracy is not None and report.flatbuffer_accuracy is not None:
        drop = report.keras_accuracy - report.flatbuffer_accuracy
        if drop > LOSSY_ACCURACY_DROP_ALLOWED + 1e-12:
            failure = (
                f"accuracy drops by {drop:.2%} (at most {LOSSY_ACCURACY_DROP_ALLOWED:.0%} "
                "allowed for a lossy export)"
            )
            fewer = round(drop * n)
            small = math.floor(LOSSY_ACCURACY_DROP_ALLOWED * n) == 0
            if small and fewer <= consistent_count(n, LOSSY_ACCURACY_DROP_ALLOWED):
                counts = f"{fewer} of {n} fewer correct"
                needed = LOSSY_MIN_SAMPLES_ACCURACY
                report.undecided.append(Undecided(failure, "accuracy", counts, needed))
            else:
                report.failures.append(failure)
    if not report.is_class_scores and report.cosine_min < LOSSY_COSINE_MIN:
        report.failures.append(
            f"min cosine {report.cosine_min:.4f} (at least {LOSSY_COSINE_MIN} for a lossy export)"
        )
