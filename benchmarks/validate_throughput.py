"""Validation throughput for BinaryDenseNet28 at 224x224: cold and warm Keras-output cache.

    .venv/bin/python benchmarks/validate_throughput.py [--samples 16 64 256] [--repeats 2]
        [--seed 1] [--reference]

Builds BinaryDenseNet28 (224x224, 1000 classes; Keras weights seeded, batch
norms randomised by ``models.randomize_batchnorm``), saves it as a ``.keras``
checkpoint and exports it with LCE, then, for each sample count (photos
with a little noise, some of which sit on sign ties: from 64 samples on,
every run localizes), prints samples/s of:

1. ``validate`` end to end with a cold cache (loads the checkpoint, runs Keras
   and LCE's interpreter; the cache folder is emptied before each round) and
   with a warm cache (the Keras outputs are read back: only the flatbuffer
   side runs);
2. its parts: Keras alone (all cores, batches of 16) and LCE's interpreter
   alone (one process, indirect kernel);
3. the ceiling those parts allow on this machine for a cold run, Keras and the
   interpreter sharing every core perfectly: ``1 / (1/keras + 1/(cores * lce))``.
   It leaves out a run's fixed work: loading the checkpoint, tracing Keras,
   localizing (once per run, whatever the sample count);
4. with several sample counts, the rates between consecutive counts, which
   leave that fixed work out too, and the fixed seconds it implies.

Each figure is the median of ``--repeats`` rounds; rounds interleave the rows
(the machine is shared and noisy). ``--reference`` also compares the numpy
reference executor with LCE's interpreter on every tensor of one photo.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bnnconvert import _tf, ir, models, reference
from bnnconvert.preprocessing import PRESETS
from bnnconvert.validate import ValidationResult, validate
from bnnconvert.validation.data import photos as sample_photos
from bnnconvert.validation.runner import keras_predict

KERAS = "Keras alone (batches of 16, all cores)"
LCE = "LCE interpreter alone, 1 process, indirect kernel"
COLD = "validate, cold cache (load checkpoint + Keras + LCE)"
WARM = "validate, warm cache (LCE only)"
CEILING = "ceiling"


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def reference_agreement(flatbuffer: bytes, photo: np.ndarray) -> str:
    """Every tensor of one photo: reference executor vs LCE's reference bconv kernel."""
    model = ir.read(flatbuffer)
    wanted = [t for op in model.subgraphs[0].operators for t in op.outputs]
    cut = _tf.lce_interpreter(
        ir.write(reference.with_outputs(model, wanted)), use_reference_bconv=True
    )
    theirs = dict(zip(wanted, cut.predict(photo), strict=True))
    start = time.perf_counter()
    ours = reference.run(model, [photo])
    took = time.perf_counter() - start
    exact = same = 0
    worst = 0.0
    for index, expected in theirs.items():
        got = ours[index]
        if got.dtype.kind in "iu":
            exact += 1
            same += int(np.array_equal(got, expected))
        else:
            scale = max(float(np.abs(expected).max()), 1e-6)
            worst = max(worst, float(np.abs(got - expected).max()) / scale)
    return (
        f"reference executor vs LCE interpreter (reference bconv), one photo, every tensor: "
        f"{same}/{exact} integer tensors bit-exact, {len(theirs) - exact} float tensors with "
        f"max error {worst:.2e} of their scale; {took:.2f} s/sample"
    )


def measure(
    keras_model, ckpt: Path, flatbuffer: bytes, x: np.ndarray, folder: Path, repeats: int
) -> tuple[dict[str, list[float]], dict[str, ValidationResult]]:
    """samples/s of each row, ``repeats`` rounds interleaving the rows; the last results."""
    n = len(x)
    path = folder / "model.tflite"
    path.write_bytes(flatbuffer)
    np.savez(folder / "data.npz", x=x)
    cache_folder = folder / "cache"
    os.environ["BNNCONVERT_CACHE"] = str(cache_folder)
    interpreter = _tf.lce_interpreter(flatbuffer, use_indirect_bgemm=True)
    results: dict[str, ValidationResult] = {}

    def run_validate(label: str, cold: bool) -> Callable[[], object]:
        def go() -> None:
            if cold:
                shutil.rmtree(cache_folder, ignore_errors=True)
            results[label] = validate(ckpt, path, data=folder / "data.npz")

        return go

    lce_n = max(4, n // 4)
    rows: list[tuple[str, Callable[[], object], int]] = [
        (COLD, run_validate(COLD, cold=True), n),
        (WARM, run_validate(WARM, cold=False), n),
        (KERAS, lambda: keras_predict(keras_model, x), n),
        (LCE, lambda: [interpreter.predict(s[None]) for s in x[:lce_n]], lce_n),
    ]
    rates: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    for _ in range(repeats):
        for label, work, done in rows:
            rates[label].append(done / seconds(work))
    return rates, results


def report(n: int, cores: int, rates: dict[str, list[float]], results) -> dict[str, float]:
    """Print one sample count's table; return its median samples/s, with the ceiling's."""
    median = {label: statistics.median(r) for label, r in rates.items()}
    keras_rate, lce_rate = median[KERAS], median[LCE]
    ceiling = 1.0 / (1.0 / keras_rate + 1.0 / (cores * lce_rate))
    rounds = len(rates[KERAS])
    print(f"\n## {n} samples ({cores} cores, medians of {rounds} rounds)\n")
    print(f"| {'what':62} | samples/s | rounds |")
    print(f"|{'-' * 64}|-----------|--------|")
    for label, value in median.items():
        spread = ", ".join(f"{r:.1f}" for r in rates[label])
        print(f"| {label:62} | {value:9.1f} | {spread} |")
    print(
        f"| {'ceiling (cold): Keras + LCE sharing all cores perfectly':62} | {ceiling:9.1f} | "
        f"1/(1/{keras_rate:.1f} + 1/({cores}*{lce_rate:.1f})) |"
    )
    print(
        f"\ncold: {median[COLD] / ceiling:.0%} of the ceiling; warm: "
        f"{median[WARM] / lce_rate:.2f}x LCE's own rate"
    )
    for label, result in results.items():
        print(f"\n{label}: {result.summary()} (Keras outputs: cache {result.keras_cache})")
        print(
            f"  of its {result.seconds:.1f} s: Keras side {result.keras_seconds:.1f} s, "
            f"loading for and localizing {result.localization_seconds:.1f} s"
        )
    return {**median, CEILING: ceiling}


def report_marginal(medians: dict[int, dict[str, float]], localized: dict[int, bool]) -> None:
    """The rate between consecutive sample counts, which leaves out a run's fixed work.

    A run takes about ``fixed + n / rate``: loading the checkpoint, tracing
    Keras and localizing (once, whatever the count) are the fixed part. Only
    counts that both localized, or both did not, are paired.
    """
    counts = sorted(medians)
    print("\n## Between sample counts (fixed work left out)\n")
    print("| samples | cold samples/s | cold / ceiling | cold fixed s | warm samples/s | "
          "warm / LCE | warm fixed s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for low, high in itertools.pairwise(counts):
        row = [f"{low} -> {high}"]
        if localized[low] != localized[high]:
            print(f"| {row[0]} | (only {high if localized[high] else low} localized) |||||| ")
            continue
        for label, versus in ((COLD, CEILING), (WARM, LCE)):
            seconds = {n: n / medians[n][label] for n in (low, high)}
            rate = (high - low) / (seconds[high] - seconds[low])
            bound = statistics.mean(medians[n][versus] for n in (low, high))
            fixed = seconds[high] - high / rate
            ratio = f"{rate / bound:.0%}" if versus == CEILING else f"{rate / bound:.2f}x"
            row += [f"{rate:.1f}", ratio, f"{fixed:.1f}"]
        print("| " + " | ".join(row) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()

    keras = _tf.keras()
    keras.utils.set_random_seed(args.seed)
    keras_model = models.binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    models.randomize_batchnorm(keras_model, 28)
    flatbuffer = bytes(_tf.lce().convert_keras_model(keras_model))
    photos = sample_photos(PRESETS["imagenet"], (224, 224, 3))
    rng = np.random.default_rng(0)
    cores = len(os.sched_getaffinity(0))
    print(f"BinaryDenseNet28 224x224, {cores} cores")
    medians: dict[int, dict[str, float]] = {}
    localized: dict[int, bool] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ckpt = folder / "bdn28.keras"
        keras_model.save(ckpt)
        for n in args.samples:
            x = np.concatenate(
                [photos[i % len(photos)][None]
                 + rng.normal(0, 0.05, (1, 224, 224, 3)).astype("float32") for i in range(n)]
            )  # fmt: skip
            keras_predict(keras_model, x[:16])  # trace once
            rates, results = measure(keras_model, ckpt, flatbuffer, x, folder, args.repeats)
            medians[n] = report(n, cores, rates, results)
            localized[n] = bool(results[COLD].localized_samples)
    if len(medians) > 1:
        report_marginal(medians, localized)
    if args.reference:
        print("\n" + reference_agreement(flatbuffer, photos[:1]))


if __name__ == "__main__":
    main()
