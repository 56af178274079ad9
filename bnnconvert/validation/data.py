"""The inputs ``validate`` runs both sides on: an ``.npz``, a folder of images, photographs.

By default the checkpoint's ``test_split.npz``; ``--data`` may be an ``.npz``
(``x``, optional ``y``) or a folder of images, preprocessed as the model's
metadata says (:mod:`bnnconvert.metadata`) or, without metadata, resized to
the input and scaled to [0, 1]. ImageNet-size models (3 channels, at least
64 px) without data are checked on photographs that scikit-image ships, with
the ImageNet preprocessing of the published BinaryDenseNets.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from bnnconvert import ir
from bnnconvert.checkpoint import TEST_SPLIT_NAME
from bnnconvert.checkpoint_files import MAX_SIDE_BYTES
from bnnconvert.errors import UsageProblem
from bnnconvert.limits import check_regular_file

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
"""scikit-image sample photographs used for ImageNet-size models without data."""


def data_digest(x: np.ndarray) -> str:
    """sha256 of the inputs' shape, dtype and bytes (a cache key for Keras outputs)."""
    digest = hashlib.sha256(f"{x.shape}{x.dtype}".encode())
    digest.update(np.ascontiguousarray(x).data)
    return digest.hexdigest()


def load_data(
    data: str | Path | None,
    test_data: Path | None,
    fb_model: ir.Model,
    input_shape: tuple[int, ...],
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Inputs ``(N, *input_shape)`` float32, labels or None, and a description."""
    if data is None:
        if test_data is not None:
            return (*load_npz(test_data, input_shape), str(test_data))
        if len(input_shape) == 3 and input_shape[2] == 3 and min(input_shape[:2]) >= 64:
            from bnnconvert.preprocessing import PRESETS

            return photos(PRESETS["imagenet"], input_shape), None, "scikit-image photographs"
        raise UsageProblem(
            "Expected data to validate on: the checkpoint has no test_split.npz beside it; "
            "pass --data with an .npz (x, y) or a folder of images"
        )
    path = Path(data)
    if not path.exists():
        raise UsageProblem(
            f"--data {path}: no such file or directory; give an .npz (x, optional y) "
            "or a folder of images"
        )
    if path.is_dir():
        return _load_folder(path, fb_model, input_shape), None, str(path)
    if path.suffix == ".npz" and path.is_file():
        return (*load_npz(path, input_shape), str(path))
    raise UsageProblem(f"Expected --data to be an .npz file or a folder of images, got {path}")


def _check_npz_size(path: Path) -> None:
    """A regular file whose arrays, as declared in the zip directory, fit the test-data cap.

    ``zipfile`` stops at a member's declared size, so a member that inflates
    beyond it cannot cost more.
    """
    limit = MAX_SIDE_BYTES[TEST_SPLIT_NAME]
    check_regular_file(path, limit, "an .npz of test data")
    try:
        with zipfile.ZipFile(path) as archive:
            inflated = sum(info.file_size for info in archive.infolist())
    except (OSError, zipfile.BadZipFile) as e:
        raise UsageProblem(f"{path}: expected an .npz with an array 'x' (and 'y'): {e}") from e
    if inflated > limit:
        raise UsageProblem(
            f"{path}: its arrays inflate to {inflated / (1 << 20):.0f} MiB, more than the "
            f"{limit >> 20} MiB bnnconvert reads as test data; give fewer samples"
        )


def load_npz(path: Path, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray | None]:
    _check_npz_size(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            x = np.asarray(arrays["x"], dtype=np.float32)
            y = np.asarray(arrays["y"]).astype(np.int64) if "y" in arrays else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageProblem(f"{path}: expected an .npz with an array 'x' (and 'y'): {e}") from e
    if x.shape[1:] != input_shape:
        raise UsageProblem(
            f"{path}: expected x of shape (N, {', '.join(map(str, input_shape))}), got "
            f"{x.shape}; the model takes {'x'.join(map(str, input_shape))} inputs: pass --data "
            "with samples of that shape, or a folder of images (they are resized)"
        )
    if y is not None and y.shape != (x.shape[0],):
        raise UsageProblem(f"{path}: expected y of shape ({x.shape[0]},), got {y.shape}")
    return x, y


def range_notes(x: np.ndarray, fb_model: ir.Model) -> list[str]:
    """A note when ``x`` is clearly not in the range the model's recorded preprocessing gives.

    "Clearly": the data reach beyond that range by more than half its width
    (raw 0..255 pixels for a 0..1 model), or span less than a fiftieth of it
    (0..1 data for a 0..255 model; constant data tells nothing). Models without
    recorded preprocessing get none.

    Arguments:
        x: the inputs validate feeds, ``(N, *input_shape)`` float32.
        fb_model: the flatbuffer, whose ``bnnconvert`` metadata is read.

    Returns:
        One note, or nothing.
    """
    from bnnconvert.metadata import read_metadata
    from bnnconvert.preprocessing import PreprocessingSpec

    metadata = read_metadata(fb_model)
    if not metadata or not metadata.get("preprocessing") or not x.size:
        return []
    low, high = PreprocessingSpec.from_dict(metadata["preprocessing"]).value_range()
    want_low, want_high = min(low) + 0.0, max(high) + 0.0  # + 0.0: no "-0"
    width = want_high - want_low
    got_low, got_high = float(x.min()) + 0.0, float(x.max()) + 0.0
    outside = got_low < want_low - width / 2 or got_high > want_high + width / 2
    if not outside and not 0 < got_high - got_low < width / 50:
        return []
    return [
        f"the data range {got_low:.4g}..{got_high:.4g} does not fit the "
        f"{want_low:.4g}..{want_high:.4g} the model's recorded preprocessing gives; "
        "preprocess the data as the metadata says (bnnconvert inspect shows it), "
        "or the comparison is on inputs the model never sees"
    ]


def _spec_for(fb_model: ir.Model, input_shape: tuple[int, ...]) -> Any:
    from bnnconvert.metadata import read_metadata
    from bnnconvert.preprocessing import PreprocessingSpec

    metadata = read_metadata(fb_model)
    if metadata and metadata.get("preprocessing"):
        return PreprocessingSpec.from_dict(metadata["preprocessing"])
    color = "gray" if input_shape[-1] == 1 else "rgb"
    return PreprocessingSpec(color=color, fit="stretch", scale=255.0, mean=(0.0,), std=(1.0,))


def _load_folder(folder: Path, fb_model: ir.Model, input_shape: tuple[int, ...]) -> np.ndarray:
    from bnnconvert.preprocessing import load_image, preprocess

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UsageProblem(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}); give a folder of images or an .npz"
        )
    spec = _spec_for(fb_model, input_shape)
    images = []
    for file in files:
        rgb = load_image(file, input_shape[0], input_shape[1])  # size-checked before decoding
        images.append(preprocess(rgb, spec, input_shape[0], input_shape[1])[0])
    return np.stack(images)


def photos(spec: Any, input_shape: tuple[int, ...]) -> np.ndarray:
    import skimage.data

    from bnnconvert.preprocessing import preprocess

    images = []
    for name in PHOTOS:
        rgb = np.asarray(getattr(skimage.data, name)())[..., :3]
        images.append(preprocess(rgb.astype(np.uint8), spec, input_shape[0], input_shape[1])[0])
    return np.stack(images)
