"""Image preprocessing that an exported model declares, and its reference implementation.

A :class:`PreprocessingSpec` says how an RGB photo becomes the model's input
tensor: colour order, which part of the photo is kept, and how pixel values
are normalised. It is written into the exported model's metadata
(:mod:`bnnconvert.metadata`) and :func:`preprocess` is the reference that the
Android demo's Java core (``android_demo/core``) reproduces bit for bit.

The algorithm, step by step (``docs/metadata.md`` has the same text):

1. Colour: ``rgb`` keeps R, G, B; ``bgr`` reverses them; ``gray`` uses
   ``(0.299*R + 0.587*G) + 0.114*B`` per source pixel, in float64.
2. Region: ``fit="crop"`` takes the largest centred rectangle of the photo with
   the model input's aspect ratio and scales it by ``crop_fraction`` about the
   centre (``resize=256;crop=224`` gives 0.875, the usual ImageNet centre
   crop); ``fit="stretch"`` takes the whole photo scaled by ``crop_fraction``.
   The region has real-valued edges; it is never rounded to whole pixels.
3. Resampling: separable triangle filter (bilinear interpolation with
   antialiasing when shrinking), horizontal pass first, then vertical, in
   float64. For output index ``i`` on an axis whose region starts at ``a``
   and has length ``L`` over ``n`` outputs: ``s = L / n``, ``r = max(s, 1)``,
   ``c = a + (i + 0.5) * s``; source pixels ``k`` from ``floor(c - r)`` to
   ``floor(c + r)`` clipped to the image, weight
   ``w_k = max(0, 1 - |(k + 0.5) - c| / r)``; value
   ``(sum_k w_k * p_k) / (sum_k w_k)``, both sums in increasing ``k``. When
   shrinking, the filter reaches up to one output pixel beyond the region.
4. Normalisation: ``(x / scale - mean[c]) / std[c]`` in float64, then rounded
   once to float32.

Every step uses only IEEE-754 double additions, multiplications, divisions,
``floor`` and ``abs`` in a fixed order, so Java's ``double`` arithmetic gives
the identical tensor.
"""

from __future__ import annotations

import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bnnconvert.errors import UsageProblem
from bnnconvert.limits import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, check_regular_file

COLOR_ORDERS = ("rgb", "bgr", "gray")
FITS = ("crop", "stretch")
RESAMPLE = "triangle"
_BAND_ROWS = 256  # source rows converted to float64 at a time
"""The one resampling filter defined so far (see the module docstring)."""


def _expect_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageProblem(f"Expected {key}= among {', '.join(choices)}, got {value!r}")


@dataclass(frozen=True)
class PreprocessingSpec:
    """How a photo becomes the model's input tensor.

    Attributes:
        color: ``"rgb"``, ``"bgr"`` or ``"gray"`` (one channel).
        fit: ``"crop"`` (keep aspect ratio, centre crop) or ``"stretch"``.
        crop_fraction: share of the fitted region kept about its centre, in (0, 1].
        scale: pixel values (0-255) are divided by this first.
        mean: subtracted after scaling, one value per channel.
        std: divides after subtracting the mean, one value per channel (non-zero).
    """

    color: str = "rgb"
    fit: str = "crop"
    crop_fraction: float = 1.0
    scale: float = 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @property
    def channels(self) -> int:
        """Channels of the input tensor this spec produces."""
        return 1 if self.color == "gray" else 3

    def __post_init__(self) -> None:
        _expect_choice("order", self.color, COLOR_ORDERS)
        _expect_choice("fit", self.fit, FITS)
        if not (0.0 < self.crop_fraction <= 1.0) or not math.isfinite(self.crop_fraction):
            raise UsageProblem(
                f"Expected a crop fraction in (0, 1], got {self.crop_fraction}; "
                "give crop= no larger than resize= (e.g. resize=256;crop=224)"
            )
        if not math.isfinite(self.scale) or self.scale <= 0:
            raise UsageProblem(
                f"Expected scale= to be a positive number, got {self.scale}; "
                "use scale=255 for inputs in 0..1 or scale=1 for 0..255"
            )
        for key, values in (("mean", self.mean), ("std", self.std)):
            if len(values) not in (1, self.channels):
                raise UsageProblem(
                    f"Expected {key}= to have 1 or {self.channels} values for order={self.color}, "
                    f"got {len(values)}; give one value per channel"
                )
            if not all(math.isfinite(v) for v in values):
                raise UsageProblem(f"Expected finite numbers in {key}=, got {list(values)}")
        if any(v == 0 for v in self.std):
            raise UsageProblem(
                f"Expected non-zero values in std=, got {list(self.std)}; use std=1 for no scaling"
            )

    def per_channel(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(mean, std)`` expanded to one value per channel."""
        c = self.channels
        mean = self.mean * c if len(self.mean) == 1 else self.mean
        std = self.std * c if len(self.std) == 1 else self.std
        return tuple(mean), tuple(std)

    def value_range(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """``(min, max)`` per channel of the tensor for pixel values 0..255."""
        mean, std = self.per_channel()
        lo = [(0.0 / self.scale - m) / s for m, s in zip(mean, std, strict=True)]
        hi = [(255.0 / self.scale - m) / s for m, s in zip(mean, std, strict=True)]
        return (
            tuple(min(a, b) for a, b in zip(lo, hi, strict=True)),
            tuple(max(a, b) for a, b in zip(lo, hi, strict=True)),
        )

    def describe(self, height: int | None = None, width: int | None = None) -> str:
        """The steps in words, for people (``inspect``, the metadata summary).

        Arguments:
            height, width: the model input's spatial size, when known.

        Example:
            >>> PRESETS["digits"].describe(8, 8)
            'grayscale; whole photo stretched to 8×8, bilinear; (pixel/255 − 1)/−1, values 0..1'
            >>> PRESETS["imagenet"].describe(224, 224).split("; ")[1]
            'centre crop of 87.5% (resize 256 → crop 224), resized to 224×224, bilinear'
        """
        color = {
            "rgb": "RGB",
            "bgr": "BGR (channels reversed)",
            "gray": "grayscale",
        }[self.color]
        size = f"{height}×{width}" if height and width else "the input size"
        f = self.crop_fraction
        if self.fit == "stretch":
            region = "whole photo" if f == 1 else f"centre {f:.1%} of the photo"
            region += f" stretched to {size}"
        else:
            region = "centre crop to the input's aspect ratio"
            if f != 1:
                region = f"centre crop of {f:.1%}"
                region += f" (resize 256 → crop {256 * f:g})" if (256 * f).is_integer() else ""
            region += f", resized to {size}"
        mean, std = self.per_channel()
        x = "pixel" if self.scale == 1 else f"pixel/{self.scale:g}"
        if any(m != 0 for m in mean):
            x = f"{x} − {_listed(mean)}"
        if any(s != 1 for s in std):
            x = f"({x})/{_listed(std)}" if " " in x else f"{x}/{_listed(std)}"
        low, high = self.value_range()
        values = f"values {_listed((min(low) + 0.0,))}..{_listed((max(high) + 0.0,))}"
        return f"{color}; {region}, bilinear; {x}, {values}"

    def to_dict(self) -> dict:
        """The JSON form stored in the model's ``bnnconvert`` metadata."""
        mean, std = self.per_channel()
        return {
            "color": self.color,
            "fit": self.fit,
            "crop_fraction": self.crop_fraction,
            "resample": RESAMPLE,
            "scale": self.scale,
            "mean": list(mean),
            "std": list(std),
        }

    @classmethod
    def from_dict(cls, data: dict) -> PreprocessingSpec:
        """Inverse of :meth:`to_dict`.

        Raises:
            UsageProblem: a field is missing or holds a value this version does not know.
        """
        resample = data.get("resample", RESAMPLE)
        if resample != RESAMPLE:
            raise UsageProblem(
                f"Expected resample {RESAMPLE!r}, got {resample!r}; "
                "this model needs a newer bnnconvert"
            )
        try:
            return cls(
                color=data["color"],
                fit=data["fit"],
                crop_fraction=float(data["crop_fraction"]),
                scale=float(data["scale"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise UsageProblem(
                f"Expected preprocessing with color, fit, crop_fraction, scale, mean, std; "
                f"got {data!r}; re-export the model"
            ) from e


PRESETS: dict[str, PreprocessingSpec] = {
    # torchvision / Keras-applications ImageNet convention; what the published
    # BinaryDenseNet weights were trained with (centre 224/256 of the shorter side).
    "imagenet": PreprocessingSpec(
        color="rgb",
        fit="crop",
        crop_fraction=224 / 256,
        scale=255.0,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
    ),
    # The bundled digits model: a dark digit on light paper, whole image,
    # grey 0..1 with ink high (the scikit-learn digits have ink high).
    "digits": PreprocessingSpec(
        color="gray", fit="stretch", crop_fraction=1.0, scale=255.0, mean=(1.0,), std=(-1.0,)
    ),
    # Plain pixel scalings.
    "unit": PreprocessingSpec(scale=255.0, mean=(0.0,), std=(1.0,)),
    "symmetric": PreprocessingSpec(scale=127.5, mean=(1.0,), std=(1.0,)),
    "pixels": PreprocessingSpec(scale=1.0, mean=(0.0,), std=(1.0,)),
}
"""Named specs for ``--preprocessing``; keys given after a preset override it."""

KEYS = ("mean", "std", "scale", "resize", "crop", "order", "fit")
"""The ``key=value`` items a spec may give after its preset."""

_SYNTAX = (
    f"give a preset ({', '.join(PRESETS)}) and/or ;-separated key=value items "
    f"({', '.join(KEYS)}), e.g. imagenet;order=bgr"
)
"""What a spec may hold, ending every error that rejects its form."""


def parse_preprocessing(text: str) -> PreprocessingSpec:
    """Parse a ``--preprocessing`` value.

    The value is ``;``-separated: an optional preset name first (one of
    :data:`PRESETS`), then ``key=value`` items that override it. Keys:
    ``mean`` and ``std`` (one number, or one per channel in the tensor's channel
    order; ``order=bgr`` after a preset reverses the preset's values),
    ``scale`` (number), ``resize`` and ``crop`` (pixels of the shorter side,
    together; the kept share is ``crop / resize``), ``order``
    (``rgb``/``bgr``/``gray``), ``fit`` (``crop``/``stretch``).

    Example:
        >>> parse_preprocessing("imagenet;order=bgr").color
        'bgr'
        >>> parse_preprocessing("mean=127.5;std=127.5;scale=1").mean
        (127.5,)

    Raises:
        UsageProblem: an unknown preset or key, or a value that does not parse.
    """
    items = [part.strip() for part in text.split(";") if part.strip()]
    if not items:
        raise UsageProblem(f"Expected a preprocessing spec, got {text!r}; {_SYNTAX}")
    fields: dict = {}
    if "=" not in items[0]:
        name = items.pop(0).lower()
        if name not in PRESETS:
            raise UsageProblem(f"Expected a preprocessing preset, got {name!r}; {_SYNTAX}")
        base = PRESETS[name]
        fields = {
            "color": base.color,
            "fit": base.fit,
            "crop_fraction": base.crop_fraction,
            "scale": base.scale,
            "mean": base.mean,
            "std": base.std,
        }
    given: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in KEYS:
            raise UsageProblem(
                f"Expected key=value with a known key after the preset, got {item!r} "
                f"in preprocessing= {text!r}; {_SYNTAX}"
            )
        if key in given:
            raise UsageProblem(f"Expected each key once in preprocessing=, got {key}= twice")
        given[key] = value.strip()
    for key in ("mean", "std"):
        if key in given:
            fields[key] = _numbers(key, given[key])
    if "scale" in given:
        fields["scale"] = _numbers("scale", given["scale"], single=True)[0]
    if "order" in given:
        color = given["order"].lower()
        if fields.get("color") == "rgb" and color == "bgr":
            # mean= and std= follow the tensor's channels; a preset's are in RGB order.
            for key in ("mean", "std"):
                if key not in given:
                    fields[key] = tuple(reversed(fields[key]))
        fields["color"] = color
    if "fit" in given:
        fields["fit"] = given["fit"].lower()
    if ("resize" in given) != ("crop" in given):
        raise UsageProblem(
            "Expected resize= and crop= together (the kept share is crop/resize), got only "
            f"{'resize' if 'resize' in given else 'crop'}=; e.g. resize=256;crop=224"
        )
    if "resize" in given:
        resize = _positive_int("resize", given["resize"])
        crop = _positive_int("crop", given["crop"])
        if crop > resize:
            raise UsageProblem(
                f"Expected crop= no larger than resize=, got crop={crop} > resize={resize}; "
                "e.g. resize=256;crop=224"
            )
        fields["crop_fraction"] = crop / resize
    return PreprocessingSpec(**fields)


def _numbers(key: str, value: str, single: bool = False) -> tuple[float, ...]:
    try:
        numbers = tuple(float(v) for v in value.split(","))
    except ValueError as e:
        raise UsageProblem(
            f"Expected comma-separated numbers for {key}=, got {value!r}; e.g. {key}=0.5,0.5,0.5"
        ) from e
    if single and len(numbers) != 1:
        raise UsageProblem(f"Expected one number for {key}=, got {value!r}")
    return numbers


def _positive_int(key: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError as e:
        raise UsageProblem(f"Expected a whole number of pixels for {key}=, got {value!r}") from e
    if number <= 0:
        raise UsageProblem(f"Expected a positive number of pixels for {key}=, got {number}")
    return number


def crop_region(
    src_height: int, src_width: int, spec: PreprocessingSpec, height: int, width: int
) -> tuple[float, float, float, float]:
    """The source region ``(top, left, region_height, region_width)`` that is resampled."""
    f = spec.crop_fraction
    if spec.fit == "stretch":
        region_h = f * src_height
        region_w = f * src_width
    elif src_width * height >= src_height * width:  # photo wider than the model input
        region_h = f * src_height
        region_w = region_h * width / height
    else:
        region_w = f * src_width
        region_h = region_w * height / width
    return (src_height - region_h) / 2, (src_width - region_w) / 2, region_h, region_w


def _taps(start: float, length: float, n_out: int, n_src: int) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and triangle weights per output, padded with zero weights."""
    s = length / n_out
    r = max(s, 1.0)
    rows = []
    for i in range(n_out):
        c = start + (i + 0.5) * s
        k0 = max(0, math.floor(c - r))
        k1 = min(n_src - 1, math.floor(c + r))
        ks = list(range(k0, k1 + 1))
        ws = [max(0.0, 1.0 - abs((k + 0.5) - c) / r) for k in ks]
        rows.append((ks, ws))
    width = max(len(ks) for ks, _ in rows)
    index = np.zeros((n_out, width), dtype=np.int64)
    weight = np.zeros((n_out, width), dtype=np.float64)
    for i, (ks, ws) in enumerate(rows):
        index[i, : len(ks)] = ks
        index[i, len(ks) :] = ks[-1]  # weight 0: adds an exact +0.0 after the real taps
        weight[i, : len(ws)] = ws
    return index, weight


def _resample_axis(
    plane: np.ndarray, index: np.ndarray, weight: np.ndarray, axis: int
) -> np.ndarray:
    """Weighted sums along ``axis`` (0 or 1), accumulated tap by tap in order."""
    moved = np.moveaxis(plane, axis, 0)  # (n_src, other, ...)
    acc = np.zeros((index.shape[0], *moved.shape[1:]), dtype=np.float64)
    norm = np.zeros(index.shape[0], dtype=np.float64)
    extra = (1,) * (moved.ndim - 1)
    for t in range(index.shape[1]):
        w = weight[:, t]
        acc = acc + w.reshape(-1, *extra) * moved[index[:, t]]
        norm = norm + w
    return np.moveaxis(acc / norm.reshape(-1, *extra), 0, axis)


def _color_planes(pixels: np.ndarray, color: str) -> np.ndarray:
    """uint8 RGB rows as float64 planes in the spec's colour order (step 1)."""
    values = pixels.astype(np.float64)
    if color == "gray":
        r, g, b = values[..., 0], values[..., 1], values[..., 2]
        return ((0.299 * r + 0.587 * g) + 0.114 * b)[..., None]
    if color == "bgr":
        return values[..., ::-1]
    return values


def preprocess(image: np.ndarray, spec: PreprocessingSpec, height: int, width: int) -> np.ndarray:
    """Turn an RGB photo into the model's float32 NHWC input tensor.

    Arguments:
        image: ``uint8`` array ``(H, W, 3)``, RGB.
        spec: the model's preprocessing.
        height, width: the model input's spatial size.

    Returns:
        ``float32`` array ``(1, height, width, spec.channels)``.

    Raises:
        UsageProblem: ``image`` is not an ``(H, W, 3)`` uint8 array.

    Example:
        >>> img = np.full((40, 60, 3), 255, np.uint8)
        >>> preprocess(img, PRESETS["unit"], 8, 8).shape
        (1, 8, 8, 3)
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
        raise UsageProblem(
            f"Expected an RGB uint8 image of shape (H, W, 3), got {image.dtype} {image.shape}; "
            "convert it first (e.g. PIL Image.convert('RGB'))"
        )
    src_h, src_w = image.shape[:2]
    top, left, region_h, region_w = crop_region(src_h, src_w, spec, height, width)
    y_index, y_weight = _taps(top, region_h, height, src_h)
    x_index, x_weight = _taps(left, region_w, width, src_w)
    # Only the source rows the vertical pass reads go through the horizontal one, a
    # band at a time: every value is per pixel or per row, so banding changes no bit,
    # and a large photo never exists as float64 (24 bytes per pixel) all at once.
    first, last = int(y_index.min()), int(y_index.max())
    bands = range(first, last + 1, _BAND_ROWS)
    rows = np.concatenate(
        [
            _resample_axis(
                _color_planes(image[i : min(i + _BAND_ROWS, last + 1)], spec.color),
                x_index,
                x_weight,
                axis=1,
            )
            for i in bands
        ]
    )
    out = _resample_axis(rows, y_index - first, y_weight, axis=0)
    mean, std = spec.per_channel()
    normalised = (out / spec.scale - np.array(mean)) / np.array(std)
    return normalised.astype(np.float32)[None]


def _too_large(path: Path, size: tuple[int, int] | None) -> UsageProblem:
    declared = f"{size[0]}x{size[1]} pixels" if size else "an image too large for Pillow"
    return UsageProblem(
        f"{path} declares {declared}, over bnnconvert's {MAX_IMAGE_PIXELS // 1_000_000} "
        "megapixel limit (checked before decoding); give a smaller image"
    )


def load_image(path: Path | str, height: int, width: int) -> np.ndarray:
    """Decode an image file to RGB, refusing what is too large before decoding it.

    The file must be a regular file of at most :data:`~bnnconvert.limits.MAX_IMAGE_BYTES`;
    its pixel count, read from the header, at most
    :data:`~bnnconvert.limits.MAX_IMAGE_PIXELS`. A larger JPEG is decoded reduced
    (by 2, 4 or 8, keeping at least ``height`` x ``width``) when that brings it
    under the limit; other images within the limit are decoded at full size, so
    :func:`preprocess` sees exactly the pixels a device would.

    Arguments:
        path: the image file (any format Pillow reads; the first frame).
        height, width: the model input's spatial size, the least a JPEG is reduced to.

    Returns:
        ``uint8`` array ``(H, W, 3)``, RGB.

    Raises:
        UsageProblem: not a regular file, too large, or not a readable image.
    """
    from PIL import Image

    path = Path(path)
    check_regular_file(path, MAX_IMAGE_BYTES, "an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                if image.format == "JPEG" and size[0] * size[1] > MAX_IMAGE_PIXELS:
                    image.draft("RGB", (width, height))
                    size = image.size
                if size[0] * size[1] > MAX_IMAGE_PIXELS:
                    raise _too_large(path, size)
                return np.asarray(image.convert("RGB"))
    except Image.DecompressionBombError as e:
        raise _too_large(path, None) from e
    except (OSError, ValueError, SyntaxError, EOFError, struct.error) as e:
        # Pillow's decoders raise all of these on malformed files.
        raise UsageProblem(f"{path}: not a readable image ({e}); replace or remove it") from e


def _listed(values: tuple[float, ...]) -> str:
    """``0.5`` when the channels share a value, else ``(0.485, 0.456, 0.406)``; minus as −."""
    shown = [f"{v:.4g}".replace("-", "−") for v in values]
    return shown[0] if len(set(shown)) == 1 else f"({', '.join(shown)})"
