"""``validate`` refuses data it cannot judge in one line, and its JSON is always valid JSON."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import BUNDLED

from bnnconvert.cli import output
from bnnconvert.errors import UsageProblem
from bnnconvert.json_report import report_json
from bnnconvert.validate import validate


def _strict_json(text: str) -> object:
    """Parse as JavaScript's JSON.parse does: NaN and Infinity are not JSON."""

    def refuse(literal: str) -> None:
        raise ValueError(f"not JSON: {literal}")

    return json.loads(text, parse_constant=refuse)


def test_report_json_writes_non_finite_numbers_as_strings() -> None:
    report = {
        "max_abs_error": float("inf"),
        "outputs": [{"cosine_min": float("nan"), "low": -float("inf"), "ok": 0.5}],
        "seconds": np.float32(1.5),
        "shape": np.array([1, 10]),
    }
    assert _strict_json(report_json(report)) == {
        "max_abs_error": "inf",
        "outputs": [{"cosine_min": "nan", "low": "-inf", "ok": 0.5}],
        "seconds": 1.5,
        "shape": [1, 10],
    }


def test_print_json_is_valid_json_with_non_finite_numbers(capsys) -> None:
    output.print_json({"max_abs_error": float("inf"), "cosine_min": float("nan")})
    out = capsys.readouterr().out
    assert _strict_json(out) == {"max_abs_error": "inf", "cosine_min": "nan"}
    with pytest.raises(ValueError, match="not JSON: Infinity"):
        _strict_json(json.dumps({"max_abs_error": float("inf")}))  # what it wrote before


# --- data validate cannot judge: refused in one line, exit 2 ----------------------------


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    """The bundled test split's first 8 samples (32x32x1 in 0..1, labels 0..9)."""
    with np.load(BUNDLED / "test_split.npz") as split:
        return split["x"][:8], split["y"][:8]


def _refused(cli, model: Path, data: Path, message: str, *extra: str) -> None:
    """The command line refuses ``data`` with exactly ``message``, exit 2."""
    code, out, err = cli("validate", str(BUNDLED), str(model), "--data", str(data), *extra)
    assert (code, out, err) == (2, "", f"error: {message}\n")


def _api_refuses(model: Path, data: object, message: str) -> None:
    with pytest.raises(UsageProblem) as info:
        validate(BUNDLED, model, data=data, use_cache=False)
    assert str(info.value) == message


@pytest.mark.parametrize(("value", "kind"), [(np.nan, "NaN"), (np.inf, "inf")])
def test_non_finite_inputs_are_refused(cli, bundled_export, digits, tmp_path, value, kind):
    x, y = digits[0].copy(), digits[1]
    x[3, 10, 10, 0] = value  # one pixel of one sample
    npz = tmp_path / "bad.npz"
    np.savez(npz, x=x, y=y)
    model = bundled_export.model_path
    tail = (
        f"x holds {kind} in 1 of 8 samples (index 3); validate compares finite inputs only: "
        "fix or drop those samples"
    )
    _refused(cli, model, npz, f"{npz}: {tail}")
    _api_refuses(model, npz, f"{npz}: {tail}")
    _api_refuses(model, (x, y), f"data= (arrays x, y): {tail}")
    x[5], x[6] = np.nan, np.inf
    _api_refuses(
        model,
        x,
        "data= (array x): x holds NaN and inf in 3 of 8 samples (indices 3, 5, 6); validate "
        "compares finite inputs only: fix or drop those samples",
    )


def test_non_finite_samples_left_out_by_samples_are_not_refused(bundled_export, digits):
    x = digits[0].copy()
    x[7] = np.nan
    result = validate(BUNDLED, bundled_export.model_path, data=x, samples=7, use_cache=False)
    assert result.passed and result.samples == 7


def test_empty_data_is_refused(cli, bundled_export, tmp_path):
    npz = tmp_path / "empty.npz"
    np.savez(npz, x=np.zeros((0, 32, 32, 1), np.float32), y=np.zeros(0, np.int64))
    model = bundled_export.model_path
    tail = "x holds no samples (shape (0, 32, 32, 1)); give at least one sample"
    _refused(cli, model, npz, f"{npz}: {tail}")
    _api_refuses(model, npz, f"{npz}: {tail}")
    _api_refuses(model, np.zeros((0, 32, 32, 1)), f"data= (array x): {tail}")


def test_an_npz_without_x_names_the_arrays_it_holds(cli, bundled_export, digits, tmp_path):
    npz = tmp_path / "keys.npz"
    np.savez(npz, images=digits[0], labels=digits[1])
    message = (
        f"{npz}: expected an .npz with an array 'x' (and 'y'), found 'images', 'labels'; "
        "save it with np.savez(path, x=inputs, y=labels)"
    )
    _refused(cli, bundled_export.model_path, npz, message)


def test_a_folder_of_class_subfolders_says_they_are_not_read(cli, bundled_export, tmp_path):
    (tmp_path / "images" / "seven").mkdir(parents=True)
    (tmp_path / "images" / "seven" / "a.png").write_bytes(b"")
    folder = tmp_path / "images"
    message = (
        f"{folder}: no images (.png, .jpg, .jpeg, .bmp, .gif, .tif, .tiff, .webp) (subfolders, "
        "like Keras's class/image layout, are not read); give a folder of images or an .npz"
    )
    _refused(cli, bundled_export.model_path, folder, message)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (
            [0, 17, 2, -1, 4, 5, 6, 7],
            "y holds labels outside 0..9, the model's 10 classes (17 at index 1, -1 at index 3; "
            "2 of 8 samples); give y as class indices 0..9, or leave y out",
        ),
        (
            [0.5, 1, 2, 3, 4, 5, 6.5, 7],
            "y holds labels that are not whole numbers (0.5 at index 0, 6.5 at index 6; 2 of 8 "
            "samples); give y as integer class indices, or leave y out",
        ),
        (
            [0, 1, 2, 3, 4, 5, 6, np.nan],
            "y holds labels that are not whole numbers (nan at index 7; 1 of 8 samples); give y "
            "as integer class indices, or leave y out",
        ),
        (
            [0, 1, 2],
            "expected y of shape (8,), one class index per sample of x, got (3,); give one "
            "label per sample, or leave y out",
        ),
        (
            np.eye(10)[[0, 1, 2, 3, 4, 5, 6, 7]],
            "expected y of shape (8,), one class index per sample of x, got (8, 10) (one-hot? "
            "give y.argmax(axis=1)); give one label per sample, or leave y out",
        ),
    ],
    ids=["out-of-range", "fractions", "nan", "length", "one-hot"],
)
def test_bad_labels_are_refused(cli, bundled_export, digits, tmp_path, labels, message):
    x = digits[0]
    npz = tmp_path / "labels.npz"
    np.savez(npz, x=x, y=np.asarray(labels))
    model = bundled_export.model_path
    _refused(cli, model, npz, f"{npz}: {message}")
    _api_refuses(model, (x, np.asarray(labels)), f"data= (arrays x, y): {message}")


def test_whole_float_labels_are_accepted(bundled_export, digits):
    x, y = digits
    result = validate(
        BUNDLED, bundled_export.model_path, data=(x, y.astype(np.float32)), use_cache=False
    )
    assert result.passed and result.keras_accuracy == result.flatbuffer_accuracy == 1.0


# --- data given as arrays (Python API) ----------------------------------------------------


def test_arrays_are_accepted_as_data(bundled_export, digits):
    x, y = digits
    model = bundled_export.model_path
    alone = validate(BUNDLED, model, data=x, use_cache=False)
    assert (alone.passed, alone.samples, alone.keras_accuracy) == (True, 8, None)
    assert alone.data == "array x (8, 32, 32, 1)"
    labelled = validate(BUNDLED, model, data=(x.astype(np.float64), list(y)), use_cache=False)
    assert labelled.passed and labelled.keras_accuracy == 1.0


def test_data_of_another_kind_is_refused(bundled_export, digits):
    model = bundled_export.model_path
    _api_refuses(
        model,
        [digits[0]],
        "Expected data= to be a path (.npz or a folder of images), an array x or a tuple "
        "(x, y), got list",
    )
    _api_refuses(
        model,
        np.zeros((2, 16, 16, 1)),
        "data= (array x): expected x of shape (N, 32, 32, 1), got (2, 16, 16, 1); the model "
        "takes 32x32x1 inputs: pass data= with samples of that shape, or a folder of images "
        "(they are resized)",
    )


# --- notes on how the data was taken ------------------------------------------------------


def test_fewer_samples_than_asked_is_noted(cli, bundled_export, digits, tmp_path):
    npz = tmp_path / "eight.npz"
    np.savez(npz, x=digits[0], y=digits[1])
    model = bundled_export.model_path
    result = validate(BUNDLED, model, data=npz, samples=100000, use_cache=False)
    assert result.samples == 8
    assert "the data holds 8 samples; samples= 100000 asked for more" in result.notes
    assert "the data holds 8 samples; samples= 8 asked for more" not in " ".join(
        validate(BUNDLED, model, data=npz, samples=8, use_cache=False).notes
    )
    code, out, _ = cli(
        "validate", str(BUNDLED), str(model), "--data", str(npz), "--samples", "100000",
        "--json", "--no-cache",
    )  # fmt: skip
    assert code == 0
    assert "the data holds 8 samples; --samples 100000 asked for more" in json.loads(out)["notes"]


def test_default_image_scaling_is_noted(cli, bundled_export, digits, tmp_path):
    """A model that records no preprocessing: the images' default reading is said."""
    from PIL import Image

    from bnnconvert import metadata

    bare = tmp_path / "bare" / "model.tflite"
    bare.parent.mkdir()
    bare.write_bytes(
        metadata.embed_metadata(
            bundled_export.model_path.read_bytes(), name="binary_densenet_digits", target="arm64"
        )
    )
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(2):
        Image.fromarray((digits[0][i, ..., 0] * 255).astype(np.uint8)).save(folder / f"{i}.png")
    note = (
        "the model records no preprocessing, so the images were read as: grayscale; whole "
        "photo stretched to 32×32, bilinear; pixel/255, values 0..1; if the model was trained "
        "on other inputs, export it with {flag} (recorded in the model) or pass an .npz"
    )
    result = validate(BUNDLED, bare, data=folder, use_cache=False)
    assert result.passed and result.notes == [note.format(flag="preprocessing=")]
    code, out, _ = cli(
        "validate", str(BUNDLED), str(bare), "--data", str(folder), "--json", "--no-cache"
    )
    assert code == 0 and json.loads(out)["notes"] == [note.format(flag="--preprocessing")]
    recorded = validate(BUNDLED, bundled_export.model_path, data=folder, use_cache=False)
    assert recorded.notes == []  # the bundled export records the digits preset


def test_validate_json_is_valid_json_when_a_fault_makes_outputs_infinite(
    cli, bundled_export, tmp_path
):
    """A real fault (inf in the head's weights): its layer's error is the string "inf"."""
    from bnnconvert import ir

    model = ir.read(bundled_export.model_path.read_bytes())
    graph = model.subgraphs[0]
    head = next(op for op in graph.operators if op.opcode == "FULLY_CONNECTED")
    weights = ir.tensor_array(model, graph, head.inputs[1]).copy()
    weights[0] = np.inf
    old = graph.tensors[head.inputs[1]]
    head.inputs[1] = ir.add_tensor(
        model, graph, old.name + "/planted", list(weights.shape), old.dtype, weights
    )
    broken = tmp_path / "broken" / "model.tflite"
    broken.parent.mkdir()
    broken.write_bytes(ir.write(model))
    code, out, _ = cli(
        "validate", str(BUNDLED), str(broken), "--samples", "4", "--json", "--no-cache"
    )
    report = _strict_json(out)
    assert code == 1 and report["verdict"] == "fail"
    first = report["first_divergence"]  # the softmax keeps the outputs finite, not the layer
    assert (first["keras_layer"], first["max_abs_error"]) == ("head_dense", "inf")
