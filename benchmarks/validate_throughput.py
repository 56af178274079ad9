"""Validation throughput for BinaryDenseNet28 at 224x224, and reference-executor agreement.

    .venv/bin/python benchmarks/validate_throughput.py [--samples 64] [--workers 2]

Builds BinaryDenseNet28 (224x224, 1000 classes) with random but realistic
batch-norm statistics, converts it with LCE, and prints:

1. throughput (samples/s) of ``validate`` end to end (Keras + LCE interpreter
   in worker processes), next to its parts: Keras alone, the stock LCE
   interpreter in one process (indirect and default kernels), and the
   interpreter in the worker pool;
2. the numpy reference executor against the LCE interpreter at full size:
   every intermediate tensor for one photo (integer tensors bit for bit),
   end-to-end outputs for all photos, and its time per sample.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from bnnconvert import _tf, ir, models, reference
from bnnconvert.preprocessing import PRESETS
from bnnconvert.validate import InterpreterRun, _keras_predict, _photos, validate


def randomize_batchnorm(model, seed: int) -> None:
    keras = _tf.keras()
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            sign = rng.choice([-1.0, 1.0], size=n, p=[0.2, 0.8])
            layer.set_weights(
                [
                    (sign * rng.uniform(0.5, 1.5, n)).astype("float32"),
                    rng.normal(0.0, 0.3, n).astype("float32"),
                    rng.normal(0.0, 0.5, n).astype("float32"),
                    rng.uniform(0.5, 2.0, n).astype("float32"),
                ]
            )


def timed(fn, repeats: int = 1) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    keras_model = models.binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    randomize_batchnorm(keras_model, 28)
    flatbuffer = bytes(_tf.lce().convert_keras_model(keras_model))
    photos = _photos(PRESETS["imagenet"], (224, 224, 3))
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [photos[i % len(photos)][None] + rng.normal(0, 0.05, (1, 224, 224, 3)).astype("float32")
         for i in range(args.samples)]
    )  # fmt: skip
    n = len(x)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(flatbuffer)
        np.savez(Path(tmp) / "data.npz", x=x)
        _keras_predict(keras_model, x[:2])  # trace once
        rows = []
        result = None

        def end_to_end() -> None:
            nonlocal result
            result = validate(
                tmp, path, data=Path(tmp) / "data.npz", keras_model=keras_model,
                workers=args.workers,
            )  # fmt: skip

        rows.append(("validate end to end (Keras + LCE pool)", timed(end_to_end)))
        rows.append(("Keras alone (batches of 16)", timed(lambda: _keras_predict(keras_model, x))))
        sub = x[: max(4, n // 8)]
        for kernel, options in (("indirect", {"use_indirect_bgemm": True}), ("default", {})):
            interpreter = _tf.lce_interpreter(flatbuffer, **options)
            per = timed(lambda i=interpreter: [i.predict(s[None]) for s in sub]) / len(sub)
            rows.append((f"stock LCE interpreter, 1 process, {kernel} kernel", per * n))

        def pool() -> None:
            with InterpreterRun(flatbuffer, x, workers=args.workers) as run:
                run.result()

        rows.append((f"LCE interpreter, {args.workers} worker processes (indirect)", timed(pool)))

    print(f"BinaryDenseNet28 224x224, {n} samples, {args.workers} workers\n")
    print(f"| {'what':58} | samples/s | ratio to validate |")
    print(f"|{'-' * 60}|-----------|-------------------|")
    base = rows[0][1]
    for name, seconds in rows:
        print(f"| {name:58} | {n / seconds:9.1f} | {base / seconds:17.2f} |")
    assert result is not None
    print(f"\nvalidate: {result.summary()}")

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
