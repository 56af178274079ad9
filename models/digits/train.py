"""Reproduce the bundled digits BinaryDenseNet from scratch.

    .venv/bin/python models/digits/train.py            # writes model.keras, test_split.npz

Recipe (the papers' simple one): Adam (lr 2e-3), ``ste_sign`` on inputs and
kernels, no scaling factors, no pretrained float model, 30 epochs, batch 32,
on scikit-learn's handwritten digits upsampled to 32x32 (80/20 stratified
split, fixed seed). Prints the held-out test accuracy.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bnnconvert import _tf, digits, models
from bnnconvert.atomic import write_bytes

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    keras = _tf.keras()
    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    data = load_digits()
    train_idx, test_idx = digits.split()
    x = digits.prepare(data.images)
    y = data.target.astype(np.int64)

    model = models.binary_densenet("binarydensenet_digits", (32, 32, 1), 10)
    model.compile(
        optimizer=keras.optimizers.Adam(2e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    start = time.perf_counter()
    model.fit(x[train_idx], y[train_idx], batch_size=32, epochs=args.epochs, verbose=2)
    seconds = time.perf_counter() - start
    _, accuracy = model.evaluate(x[test_idx], y[test_idx], verbose=0)
    print(f"trained in {seconds:.0f} s; held-out test accuracy {accuracy:.4f}")

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = args.out / "model.tmp.keras"
    # Save an uncompiled copy: the checkpoint carries weights, not optimizer state.
    deployable = keras.models.clone_model(model)
    deployable.set_weights(model.get_weights())
    deployable.save(tmp)
    write_bytes(args.out / "model.keras", tmp.read_bytes())
    tmp.unlink()
    with (args.out / "test_split.npz").open("wb") as f:
        np.savez_compressed(f, x=x[test_idx], y=y[test_idx], indices=test_idx)


if __name__ == "__main__":
    main()
