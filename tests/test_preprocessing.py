"""Preprocessing specs (parsing, validation) and the reference ``preprocess``."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bnnconvert.errors import UsageProblem
from bnnconvert.preprocessing import (
    KEYS,
    PRESETS,
    PreprocessingSpec,
    parse_preprocessing,
    preprocess,
)

# Every error that rejects a spec's form ends with the same list of what it may hold.
SYNTAX = (
    "give a preset (imagenet, digits, unit, symmetric, pixels) and/or ;-separated key=value "
    "items (mean, std, scale, resize, crop, order, fit), e.g. imagenet;order=bgr"
)


def test_presets_and_overrides():
    spec = parse_preprocessing("imagenet")
    assert spec == PRESETS["imagenet"]
    assert spec.crop_fraction == 0.875
    bgr = parse_preprocessing(" imagenet ; order=bgr ")
    assert bgr.color == "bgr"
    assert bgr.mean == (0.406, 0.456, 0.485)  # follows the channels
    assert bgr.std == (0.225, 0.224, 0.229)
    assert parse_preprocessing("imagenet;order=bgr;mean=0.1,0.2,0.3").mean == (0.1, 0.2, 0.3)
    custom = parse_preprocessing("mean=0.5,0.4,0.3;std=0.2;scale=255;resize=256;crop=192;fit=crop")
    assert custom.per_channel() == ((0.5, 0.4, 0.3), (0.2, 0.2, 0.2))
    assert custom.crop_fraction == 0.75
    assert parse_preprocessing("order=gray").channels == 1


def test_to_dict_round_trip():
    for spec in PRESETS.values():
        assert PreprocessingSpec.from_dict(spec.to_dict()).to_dict() == spec.to_dict()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"Expected a preprocessing spec, got ''; {SYNTAX}"),
        ("cifar", f"Expected a preprocessing preset, got 'cifar'; {SYNTAX}"),
        (
            "imagenet;gamma=2",
            "Expected key=value with a known key after the preset, got 'gamma=2' "
            f"in preprocessing= 'imagenet;gamma=2'; {SYNTAX}",
        ),
        (
            "mean=0.5;imagenet",
            "Expected key=value with a known key after the preset, got 'imagenet' "
            f"in preprocessing= 'mean=0.5;imagenet'; {SYNTAX}",
        ),
        ("mean=a,b", "Expected comma-separated numbers for mean=, got 'a,b'"),
        ("scale=1,2", "Expected one number for scale=, got '1,2'"),
        ("scale=0", "Expected scale= to be a positive number, got 0.0"),
        ("resize=256", "Expected resize= and crop= together"),
        ("resize=224;crop=256", "Expected crop= no larger than resize=, got crop=256 > resize=224"),
        ("resize=2.5;crop=2", "Expected a whole number of pixels for resize=, got '2.5'"),
        ("mean=1,2", "Expected mean= to have 1 or 3 values for order=rgb, got 2"),
        ("imagenet;order=gray", "Expected mean= to have 1 or 1 values for order=gray, got 3"),
        ("std=1,0,1", "Expected non-zero values in std="),
        ("order=yuv", "Expected order= among rgb, bgr, gray, got 'yuv'"),
        ("fit=pad", "Expected fit= among crop, stretch, got 'pad'"),
        ("scale=1;scale=2", "Expected each key once in preprocessing=, got scale= twice"),
    ],
)
def test_bad_specs_give_one_line_errors(text, message):
    with pytest.raises(UsageProblem) as info:
        parse_preprocessing(text)
    assert str(info.value).startswith(message)
    assert "\n" not in str(info.value)


def test_docs_list_the_presets_and_keys_the_parser_takes():
    """docs/metadata.md's preset table and key list are the parser's (one vocabulary)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metadata.md").read_text("utf-8")
    section = doc.split("### `--preprocessing` values", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(\w+)` \|", section, re.M) == list(PRESETS)
    keys = section.split("Keys: ", 1)[1].split("Bad values", 1)[0]
    assert [key for key in KEYS if f"`{key}`" not in keys] == []


def test_same_size_copies_pixels_exactly():
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    out = preprocess(image, PRESETS["pixels"], 5, 7)
    assert out.dtype == np.float32 and out.shape == (1, 5, 7, 3)
    np.testing.assert_array_equal(out[0], image.astype(np.float32))


def test_shrinking_matches_pillow_bilinear_up_to_its_rounding():
    from PIL import Image
    from skimage import data

    photo = data.astronaut()  # 512 x 512
    ours = preprocess(photo, parse_preprocessing("pixels;fit=stretch"), 100, 120)[0]
    theirs = np.asarray(Image.fromarray(photo).resize((120, 100), Image.BILINEAR), np.float32)
    # Pillow uses the same triangle filter but rounds to uint8 (and to fixed point).
    assert np.abs(ours - theirs).max() <= 1.0


def test_enlarged_digit_matches_the_training_pipeline():
    """A dark-on-white rendering of a digit, through the "digits" preset, gives the tensor
    the bundled model was trained on (bilinear, half-pixel centres, 0..1 with ink high)."""
    from sklearn.datasets import load_digits

    from bnnconvert import digits

    images = load_digits().images[:5]
    for image in images:
        ink = image / 16.0
        paper = np.round(255 * (1 - ink)).astype(np.uint8)
        rgb = np.repeat(paper[..., None], 3, axis=2)
        ours = preprocess(rgb, PRESETS["digits"], 32, 32)
        trained = digits.prepare((16 * (1 - paper / 255.0))[None])
        # Both interpolate the same 8x8 grid bilinearly; they differ only by float32
        # rounding in TensorFlow's resize.
        np.testing.assert_allclose(ours, trained, atol=2e-6)


def test_crop_keeps_the_centre():
    # A photo whose centre is white and whose sides are black: "crop" sees only white. The
    # white band is wider than the crop by the filter's reach (one output pixel, 10 px here).
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 90:210] = 255
    out = preprocess(image, PRESETS["unit"], 10, 10)
    np.testing.assert_array_equal(out, np.ones((1, 10, 10, 3), np.float32))
    stretched = preprocess(image, parse_preprocessing("unit;fit=stretch"), 10, 10)
    assert stretched.min() == 0.0


def test_colour_orders_and_normalisation():
    image = np.array([[[255, 0, 128]]], np.uint8)
    rgb = preprocess(image, PRESETS["imagenet"], 1, 1)[0, 0, 0]
    expected = (np.array([255, 0, 128]) / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_array_equal(rgb, expected.astype(np.float32))
    bgr = preprocess(image, parse_preprocessing("pixels;order=bgr"), 1, 1)[0, 0, 0]
    np.testing.assert_array_equal(bgr, [128, 0, 255])
    gray = preprocess(image, parse_preprocessing("pixels;order=gray"), 1, 1)[0, 0, 0]
    np.testing.assert_array_equal(gray, [np.float32((0.299 * 255 + 0.0) + 0.114 * 128)])


def test_value_range():
    low, high = PRESETS["digits"].value_range()
    assert (low, high) == ((0.0,), (1.0,))


@pytest.mark.parametrize(
    "image",
    [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3))],
    ids=["grayscale-2d", "float32-rgb", "empty"],
)
def test_rejects_non_rgb_images(image):
    with pytest.raises(UsageProblem, match=r"^Expected an RGB uint8 image of shape \(H, W, 3\)"):
        preprocess(image, PRESETS["unit"], 2, 2)
