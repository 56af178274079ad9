"""scikit-learn's handwritten digits, prepared the way the bundled model saw them.

The 8x8 images (ink intensity 0..16) are scaled to [0, 1] and resized to
32x32 with bilinear interpolation (half-pixel centres), one channel.
"""

from __future__ import annotations

import numpy as np

from bnnconvert import _tf

INPUT_SIZE = 32
SEED = 20191212  # split seed; changing it changes the committed test split


def prepare(images: np.ndarray) -> np.ndarray:
    """Turn ``(N, 8, 8)`` digits (0..16) into ``(N, 32, 32, 1)`` float32 in [0, 1]."""
    tf = _tf.tensorflow()
    x = (np.asarray(images, dtype=np.float32) / 16.0)[..., None]
    return tf.image.resize(x, (INPUT_SIZE, INPUT_SIZE), method="bilinear").numpy()


def split() -> tuple[np.ndarray, np.ndarray]:
    """Indices of the train and held-out test split (80/20, stratified, fixed seed)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, test = train_test_split(
        np.arange(labels.shape[0]), test_size=0.2, stratify=labels, random_state=SEED
    )
    return np.sort(train), np.sort(test)
