"""The inputs ``validate`` runs both sides on: an ``.npz``, a folder of images, photographs.

By default the checkpoint's ``test_split.npz``; ``--data`` may be an ``.npz``
(``x``, optional ``y``) or a folder of images, preprocessed as the model's
metadata says (:mod:`bnnconvert.metadata`) or, without metadata, resized to
the input and scaled to [0, 1] (a note says so); the Python API also takes
arrays. ImageNet-size models (3 channels, at least 64 px) without data are
checked on photographs that scikit-image ships, with the ImageNet
preprocessing of the published BinaryDenseNets. Data that cannot be judged
(no samples, NaN or inf, labels that are not the model's class indices) is
refused in one line (:func:`check_data`).
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


Data = str | Path | np.ndarray | tuple[Any, Any] | None
"""What ``data=`` may be: a path (``.npz`` or a folder of images), an array ``x``,
a tuple ``(x, y)``, or None for the default."""


def load_data(
    data: Data,
    test_data: Path | None,
    fb_model: ir.Model,
    input_shape: tuple[int, ...],
    *,
    samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The inputs and labels to validate on, checked: at least one sample, finite, labels in range.

    Arguments:
        data: what ``validate`` was given as ``data=`` (see :data:`Data`).
        test_data: the checkpoint's ``test_split.npz``, the default when ``data`` is None.
        fb_model: the flatbuffer (its metadata: preprocessing for images, classes for labels).
        input_shape: the model's input shape without the batch axis.
        samples: keep at most this many samples (the first ones) before checking.

    Returns:
        Inputs ``(N, *input_shape)`` float32, labels ``(N,)`` int64 or None, and a
        description of where they came from.

    Raises:
        UsageProblem: no data, unreadable data, or data that cannot be judged
            (see :func:`check_data`).
    """
    x, y, source = _read_data(data, test_data, fb_model, input_shape)
    if samples is not None:
        x, y = x[:samples], (y[:samples] if y is not None else None)
    check_data(x, y, fb_model, _named(data, source))
    return x, y, source


def _named(data: Data, source: str) -> str:
    """How messages name the data: its path, or ``data= (array x)`` for arrays."""
    if isinstance(data, tuple):
        return "data= (arrays x, y)"
    return "data= (array x)" if isinstance(data, np.ndarray) else source


def _read_data(
    data: Data, test_data: Path | None, fb_model: ir.Model, input_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None, str]:
    if data is None:
        if test_data is not None:
            return (*load_npz(test_data, input_shape), str(test_data))
        if len(input_shape) == 3 and input_shape[2] == 3 and min(input_shape[:2]) >= 64:
            from bnnconvert.preprocessing import PRESETS

            return photos(PRESETS["imagenet"], input_shape), None, "scikit-image photographs"
        raise UsageProblem(
            "Expected data to validate on: the checkpoint has no test_split.npz beside it; "
            "pass data= with an .npz (x, y) or a folder of images"
        )
    if not isinstance(data, str | Path):
        return _from_arrays(data, input_shape)
    path = Path(data)
    if not path.exists():
        raise UsageProblem(
            f"data= {path}: no such file or directory; give an .npz (x, optional y) "
            "or a folder of images"
        )
    if path.is_dir():
        return _load_folder(path, fb_model, input_shape), None, str(path)
    if path.suffix == ".npz" and path.is_file():
        return (*load_npz(path, input_shape), str(path))
    raise UsageProblem(f"Expected data= to be an .npz file or a folder of images, got {path}")


def _from_arrays(
    data: np.ndarray | tuple[Any, Any], input_shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray | None, str]:
    """``data=`` given as an array ``x`` or a tuple ``(x, y)`` (Python API)."""
    pair = isinstance(data, tuple) and len(data) == 2
    if not isinstance(data, np.ndarray) and not pair:
        raise UsageProblem(
            f"Expected data= to be a path (.npz or a folder of images), an array x or a "
            f"tuple (x, y), got {type(data).__name__}"
        )
    x, y = data if pair else (data, None)
    label = _named(data, "")
    try:
        x = np.asarray(x, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise UsageProblem(f"{label}: expected x as numbers of shape (N, H, W, C): {e}") from e
    _check_x_shape(x, input_shape, label)
    y = None if y is None else _labels(np.asarray(y), len(x), label)
    return x, y, f"array x {x.shape}"


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
    """``x`` as float32 and ``y`` (labels, if present) as int64 from an ``.npz``; shapes checked."""
    _check_npz_size(path)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays:
                found = ", ".join(repr(name) for name in arrays.files) or "no arrays"
                raise UsageProblem(
                    f"{path}: expected an .npz with an array 'x' (and 'y'), found {found}; "
                    "save it with np.savez(path, x=inputs, y=labels)"
                )
            x = np.asarray(arrays["x"], dtype=np.float32)
            y = np.asarray(arrays["y"]) if "y" in arrays else None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise UsageProblem(f"{path}: expected an .npz with an array 'x' (and 'y'): {e}") from e
    _check_x_shape(x, input_shape, str(path))
    return x, None if y is None else _labels(y, len(x), str(path))


def _check_x_shape(x: np.ndarray, input_shape: tuple[int, ...], label: str) -> None:
    if x.shape[1:] != input_shape:
        raise UsageProblem(
            f"{label}: expected x of shape (N, {', '.join(map(str, input_shape))}), got "
            f"{x.shape}; the model takes {'x'.join(map(str, input_shape))} inputs: pass data= "
            "with samples of that shape, or a folder of images (they are resized)"
        )


def _labels(y: np.ndarray, count: int, label: str) -> np.ndarray:
    """``y`` as int64 class indices: one whole number per sample (range checked later)."""
    if y.shape != (count,):
        one_hot = y.ndim == 2 and len(y) == count
        hint = " (one-hot? give y.argmax(axis=1))" if one_hot else ""
        raise UsageProblem(
            f"{label}: expected y of shape ({count},), one class index per sample of x, got "
            f"{y.shape}{hint}; give one label per sample, or leave y out"
        )
    if y.dtype.kind in "iu":
        return y.astype(np.int64)
    whole = np.isfinite(y) & (y == np.round(y)) if y.dtype.kind == "f" else np.zeros(count, bool)
    if not whole.all():
        raise UsageProblem(
            f"{label}: y holds labels that are not whole numbers "
            f"({_which(y, ~whole, count)}); give y as integer class indices, or leave y out"
        )
    return y.astype(np.int64)


def _which(values: np.ndarray, bad: np.ndarray, count: int, shown: int = 3) -> str:
    """The first few offending values with their sample indices, and how many there are."""
    where = np.flatnonzero(bad)
    listed = ", ".join(f"{values[i].item()!r} at index {i}" for i in where[:shown])
    more = ", ..." if len(where) > shown else ""
    return f"{listed}{more}; {len(where)} of {count} samples"


def check_data(x: np.ndarray, y: np.ndarray | None, fb_model: ir.Model, label: str) -> None:
    """Refuse data ``validate`` cannot judge: no samples, NaN or inf in ``x``, labels out of range.

    Arguments:
        x: inputs ``(N, *input_shape)`` float32.
        y: class indices ``(N,)`` int64, or None.
        fb_model: the flatbuffer, whose class count bounds the labels (:func:`class_count`).
        label: how the data is named in messages (its path).

    Raises:
        UsageProblem: one line saying which samples and what to do.
    """
    if not len(x):
        raise UsageProblem(
            f"{label}: x holds no samples (shape {x.shape}); give at least one sample"
        )
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    if not finite.all():
        kinds = " and ".join(
            kind for kind, hit in (("NaN", np.isnan(x).any()), ("inf", np.isinf(x).any())) if hit
        )
        where = np.flatnonzero(~finite)
        listed = ", ".join(map(str, where[:5])) + (", ..." if len(where) > 5 else "")
        raise UsageProblem(
            f"{label}: x holds {kinds} in {len(where)} of {len(x)} samples "
            f"({'index' if len(where) == 1 else 'indices'} {listed}); validate compares "
            "finite inputs only: fix or drop those samples"
        )
    classes = class_count(fb_model)
    if y is not None and classes is not None:
        outside = (y < 0) | (y >= classes)
        if outside.any():
            raise UsageProblem(
                f"{label}: y holds labels outside 0..{classes - 1}, the model's {classes} "
                f"classes ({_which(y, outside, len(y))}); give y as class indices "
                f"0..{classes - 1}, or leave y out"
            )


def class_count(fb_model: ir.Model) -> int | None:
    """How many classes the model's class-score output has, if it has one.

    The classifier its metadata names, else the widest ``(1, C)`` output with ``C > 1``
    (the outputs ``validate`` scores by top-1); None without such an output.
    """
    from bnnconvert.metadata import read_metadata

    metadata = read_metadata(fb_model) or {}
    named = metadata.get("output")
    if isinstance(named, dict) and named.get("kind") == "classifier":
        classes = named.get("classes")
        if isinstance(classes, int) and classes > 1:
            return classes
    graph = fb_model.subgraphs[0]
    shapes = [graph.tensors[t].shape for t in graph.outputs]
    widths = [shape[1] for shape in shapes if len(shape) == 2 and shape[1] > 1]
    return max(widths, default=None)


def data_notes(data: Data, count: int, samples: int | None, fb_model: ir.Model) -> list[str]:
    """Notes on how the data was taken: fewer samples than asked, images scaled by default.

    Arguments:
        data: what ``validate`` was given as ``data=``.
        count: the samples validated (after ``samples``).
        samples: the ``samples=`` asked for, or None.
        fb_model: the flatbuffer (does its metadata record preprocessing?).

    Returns:
        Zero to two notes.
    """
    notes = []
    if samples is not None and count < samples:
        notes.append(f"the data holds {count} samples; samples= {samples} asked for more")
    if isinstance(data, str | Path) and Path(data).is_dir() and not _recorded_spec(fb_model):
        graph = fb_model.subgraphs[0]
        height, width = graph.tensors[graph.inputs[0]].shape[1:3]
        spec = _spec_for(fb_model, tuple(graph.tensors[graph.inputs[0]].shape[1:]))
        notes.append(
            f"the model records no preprocessing, so the images were read as: "
            f"{spec.describe(height, width)}; if the model was trained on other inputs, "
            "export it with preprocessing= (recorded in the model) or pass an .npz"
        )
    return notes


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


def _recorded_spec(fb_model: ir.Model) -> Any:
    """The preprocessing the model's metadata records, or None."""
    from bnnconvert.metadata import read_metadata
    from bnnconvert.preprocessing import PreprocessingSpec

    metadata = read_metadata(fb_model)
    if metadata and metadata.get("preprocessing"):
        return PreprocessingSpec.from_dict(metadata["preprocessing"])
    return None


def _spec_for(fb_model: ir.Model, input_shape: tuple[int, ...]) -> Any:
    """The recorded preprocessing, else resize, gray or RGB by the channels, and pixel / 255."""
    from bnnconvert.preprocessing import PreprocessingSpec

    recorded = _recorded_spec(fb_model)
    if recorded is not None:
        return recorded
    color = "gray" if input_shape[-1] == 1 else "rgb"
    return PreprocessingSpec(color=color, fit="stretch", scale=255.0, mean=(0.0,), std=(1.0,))


def _load_folder(folder: Path, fb_model: ir.Model, input_shape: tuple[int, ...]) -> np.ndarray:
    from bnnconvert.preprocessing import load_image, preprocess

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        inner = any(p.is_dir() for p in folder.iterdir())
        where = " (subfolders, like Keras's class/image layout, are not read)" if inner else ""
        raise UsageProblem(
            f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}){where}; give a folder of images "
            "or an .npz"
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
