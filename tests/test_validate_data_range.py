"""validate notes data whose range does not fit the model's recorded preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED

from bnnconvert import ir, metadata
from bnnconvert.preprocessing import parse_preprocessing
from bnnconvert.validate import validate
from bnnconvert.validation.data import range_notes

RAW_PIXELS_NOTE = (
    "the data range 0..255 does not fit the 0..1 the model's recorded preprocessing gives; "
    "preprocess the data as the metadata says (bnnconvert inspect shows it), "
    "or the comparison is on inputs the model never sees"
)


@pytest.fixture(scope="module")
def digits_x() -> np.ndarray:
    """The bundled test split's first 8 inputs: 0..1 grey, as the "digits" preset gives."""
    return np.load(BUNDLED / "test_split.npz")["x"][:8]


def _with_preprocessing(tiny_bnn_tflite: bytes, spec: str | None) -> ir.Model:
    preprocessing = parse_preprocessing(spec) if spec else None
    embedded = metadata.embed_metadata(
        tiny_bnn_tflite, name="tiny", target="arm64", preprocessing=preprocessing
    )
    return ir.read(embedded)


@pytest.mark.parametrize(
    ("spec", "scale", "expected"),
    [
        ("unit", 255.0, [RAW_PIXELS_NOTE]),  # raw pixels for a 0..1 model
        ("unit", 1.0, []),
        ("imagenet", 1.0, []),  # 0..1 lies inside ImageNet's -2.118..2.64: cannot tell
        (
            "pixels",
            1.0,
            [
                "the data range 0..1 does not fit the 0..255 the model's recorded preprocessing "
                "gives; preprocess the data as the metadata says (bnnconvert inspect shows it), "
                "or the comparison is on inputs the model never sees"
            ],
        ),  # 0..1 data for a 0..255 model
        ("pixels", 255.0, []),
        (None, 255.0, []),  # nothing recorded, nothing to compare with
    ],
)
def test_range_notes(tiny_bnn_tflite, digits_x, spec, scale, expected) -> None:
    x = np.repeat(digits_x, 3, axis=-1) * np.float32(scale)  # the tiny model takes RGB
    assert range_notes(x, _with_preprocessing(tiny_bnn_tflite, spec)) == expected


def test_constant_data_gets_no_note(tiny_bnn_tflite) -> None:
    x = np.zeros((2, 32, 32, 3), np.float32)
    assert range_notes(x, _with_preprocessing(tiny_bnn_tflite, "pixels")) == []


def test_validate_notes_raw_pixels(bundled_export, digits_x, tmp_path) -> None:
    """The bundled model records the digits preset (0..1); data given as 0..255 is noted."""
    raw = tmp_path / "raw.npz"
    np.savez(raw, x=(digits_x * 255).round(), y=np.zeros(len(digits_x), np.int64))
    result = validate(BUNDLED, bundled_export.model_path, data=raw, use_cache=False)
    assert RAW_PIXELS_NOTE in result.notes
    clean = tmp_path / "clean.npz"
    np.savez(clean, x=digits_x)
    assert RAW_PIXELS_NOTE not in validate(BUNDLED, bundled_export.model_path, data=clean).notes
