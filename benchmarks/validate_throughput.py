"""Validation throughput for BinaryDenseNet28 at 224x224, and reference-executor agreement.

    .venv/bin/python benchmarks/validate_throughput.py [--samples 64] [--repeats 3]
        [--workers 1,2,0] [--seed 1]

Builds BinaryDenseNet28 (224x224, 1000 classes; Keras weights seeded, batch
norms randomised by ``models.randomize_batchnorm`` so that repeated runs check
the same model), converts it with LCE, and prints:

1. throughput (samples/s) of ``validate`` end to end for each ``--workers``
   value (the first is the default on this machine), next to its parts: Keras
   alone (all cores, as validate runs it), the stock LCE interpreter in one
   process (indirect and default kernels) and in the worker pool, and the
   ceiling those parts allow on this machine: Keras and the interpreter
   sharing every core perfectly, ``1 / (1/keras + 1/(cores * lce))``. Each
   figure is the median of ``--repeats`` rounds; rounds interleave the rows
   (the machine is shared and noisy);
2. the numpy reference executor against the LCE interpreter at full size:
   every intermediate tensor for one photo (integer tensors bit for bit),
   end-to-end outputs for all photos, and its time per sample.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bnnconvert import _tf, ir, models, reference
from bnnconvert.preprocessing import PRESETS
from bnnconvert.validate import validate
from bnnconvert.validation.data import photos as sample_photos
from bnnconvert.validation.runner import InterpreterRun, default_workers, keras_predict

KERAS = "Keras alone (batches of 16, all cores)"
LCE = "LCE interpreter alone, 1 process, indirect kernel"


def seconds(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--workers", default=None, help="comma-separated worker counts for validate rows"
    )
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    default = default_workers()
    worker_counts = (
        [int(w) for w in args.workers.split(",")] if args.workers else sorted({default, 2, 0})
    )

    keras = _tf.keras()
    keras.utils.set_random_seed(args.seed)
    keras_model = models.binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    models.randomize_batchnorm(keras_model, 28)
    flatbuffer = bytes(_tf.lce().convert_keras_model(keras_model))
    photos = sample_photos(PRESETS["imagenet"], (224, 224, 3))
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [photos[i % len(photos)][None] + rng.normal(0, 0.05, (1, 224, 224, 3)).astype("float32")
         for i in range(args.samples)]
    )  # fmt: skip
    n = len(x)
    cores = len(os.sched_getaffinity(0))

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(flatbuffer)
        np.savez(Path(tmp) / "data.npz", x=x)
        keras_predict(keras_model, x[:16])  # trace once
        results = {}

        def end_to_end(workers: int) -> Callable[[], object]:
            def go() -> None:
                results[workers] = validate(
                    tmp, path, data=Path(tmp) / "data.npz", keras_model=keras_model,
                    workers=workers,
                )  # fmt: skip

            return go

        sub = x[: max(4, n // 8)]
        interpreters = {
            kernel: _tf.lce_interpreter(flatbuffer, **options)
            for kernel, options in (("indirect", {"use_indirect_bgemm": True}), ("default", {}))
        }

        def lce_alone(kernel: str) -> Callable[[], object]:
            interpreter = interpreters[kernel]
            return lambda: [interpreter.predict(s[None]) for s in sub]

        def pool(workers: int) -> Callable[[], object]:
            def go() -> None:
                with InterpreterRun(flatbuffer, ir.read(flatbuffer), x, workers=workers) as run:
                    run.result()

            return go

        rows: list[tuple[str, Callable[[], object], int]] = []  # (label, work, samples it does)
        for w in worker_counts:
            how = "in process, after Keras" if w == 0 else f"{w} interpreter worker process(es)"
            mark = " [default]" if w == default else ""
            rows.append((f"validate end to end, {how}{mark}", end_to_end(w), n))
        rows += [
            (KERAS, lambda: keras_predict(keras_model, x), n),
            (LCE, lce_alone("indirect"), len(sub)),
            ("LCE interpreter alone, 1 process, default kernel", lce_alone("default"), len(sub)),
            (f"LCE interpreter alone, {cores} worker processes", pool(cores), n),
        ]
        rates: dict[str, list[float]] = {label: [] for label, _, _ in rows}
        for _ in range(args.repeats):
            for label, work, done in rows:
                rates[label].append(done / seconds(work))

    median = {label: statistics.median(r) for label, r in rates.items()}
    keras_rate, lce_rate = median[KERAS], median[LCE]
    ceiling = 1.0 / (1.0 / keras_rate + 1.0 / (cores * lce_rate))
    print(f"BinaryDenseNet28 224x224, {n} samples, {cores} cores, medians of {args.repeats} rounds")
    print()
    print(f"| {'what':62} | samples/s | rounds |")
    print(f"|{'-' * 64}|-----------|--------|")
    for label, value in median.items():
        spread = ", ".join(f"{r:.1f}" for r in rates[label])
        print(f"| {label:62} | {value:9.1f} | {spread} |")
    print(
        f"| {'ceiling: Keras + LCE sharing all cores perfectly':62} | {ceiling:9.1f} | "
        f"1/(1/{keras_rate:.1f} + 1/({cores}*{lce_rate:.1f})) |"
    )
    for w, result in results.items():
        print(f"\nvalidate (workers={w}): {result.summary()}")
        print(f"  of its {result.seconds:.1f} s, localization {result.localization_seconds:.1f} s")
        for note in result.notes:
            print(f"  {note}")

    # Reference executor vs the LCE interpreter at full size.
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    wanted = [t for op in graph.operators for t in op.outputs]
    cut = _tf.lce_interpreter(
        ir.write(reference.with_outputs(model, wanted)), use_reference_bconv=True
    )
    theirs = dict(zip(wanted, cut.predict(photos[:1]), strict=True))
    start = time.perf_counter()
    ours = reference.run(model, [photos[:1]])
    ref_seconds = time.perf_counter() - start
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
    print(
        f"\nreference executor vs LCE interpreter (reference bconv), one photo, every tensor: "
        f"{same}/{exact} integer tensors bit-exact, {len(theirs) - exact} float tensors with "
        f"max error {worst:.2e} of their scale; reference executor {ref_seconds:.2f} s/sample"
    )
    indirect = _tf.lce_interpreter(flatbuffer, use_indirect_bgemm=True)
    lce_out = indirect.predict(photos)
    ref_out = reference.run(model, [photos])[graph.outputs[0]]
    print(
        f"end to end on {len(photos)} photos (indirect kernel): max abs error "
        f"{np.abs(lce_out - ref_out).max():.2e}, top-1 agreement "
        f"{np.mean(lce_out.argmax(1) == ref_out.argmax(1)):.0%}"
    )


if __name__ == "__main__":
    main()
