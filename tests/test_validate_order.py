"""``validate``: the checkpoint and the origin are checked before the data; hints on data errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import BUNDLED, make_tiny_bnn

from bnnconvert import convert, targets


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    """A 16x16x3 model saved as ``other/model.h5`` (no test split) and its flatbuffer."""
    folder = tmp_path_factory.mktemp("other")
    model = make_tiny_bnn(seed=1, input_shape=(16, 16, 3))
    model.save(folder / "model.h5")
    flatbuffer, _ = convert.convert(model, targets.target("arm64"))
    (folder / "model.tflite").write_bytes(flatbuffer)
    return folder / "model.h5", folder / "model.tflite"


def test_wrong_checkpoint_is_named_before_a_data_shape_problem(cli, foreign):
    _, tflite = foreign
    code, _, err = cli("validate", str(BUNDLED), str(tflite))
    assert code == 2
    assert f"{tflite} was not exported from {BUNDLED} (" in err
    assert "expected x of shape" not in err


def test_wrong_checkpoint_is_named_before_missing_test_data(cli, foreign, bundled_export):
    h5, _ = foreign
    code, _, err = cli("validate", str(h5), str(bundled_export.model_path))
    assert code == 2
    assert f"{bundled_export.model_path} was not exported from {h5} (" in err
    assert "test_split.npz" not in err


def test_a_folder_of_several_checkpoints_is_named_before_data(cli, tmp_path, bundled_export):
    for name in ("a.h5", "b.keras", "c.keras"):
        shutil.copy(BUNDLED / "model.keras", tmp_path / name)
    code, _, err = cli("validate", str(tmp_path), str(bundled_export.model_path))
    assert code == 2
    assert f"{tmp_path}: several checkpoints (a.h5, b.keras, c.keras); name one file" in err


def test_data_of_another_shape_says_what_to_pass(cli, tmp_path, bundled_export):
    data = tmp_path / "small.npz"
    np.savez(data, x=np.zeros((3, 16, 16, 1), np.float32))
    code, _, err = cli(
        "validate", str(BUNDLED), str(bundled_export.model_path), "--data", str(data)
    )
    assert code == 2
    assert (
        f"{data}: expected x of shape (N, 32, 32, 1), got (3, 16, 16, 1); the model takes "
        "32x32x1 inputs: pass --data with samples of that shape, or a folder of images "
        "(they are resized)"
    ) in err


def test_missing_data_file_is_said_to_be_missing(cli, tmp_path, bundled_export):
    missing = tmp_path / "nonexistent.npz"
    code, _, err = cli(
        "validate", str(BUNDLED), str(bundled_export.model_path), "--data", str(missing)
    )
    assert code == 2
    assert (
        f"--data {missing}: no such file or directory; give an .npz (x, optional y) "
        "or a folder of images"
    ) in err


def test_a_truncated_flatbuffer_is_named(cli, tmp_path, bundled_export):
    truncated = tmp_path / "trunc.tflite"
    truncated.write_bytes(bundled_export.model_path.read_bytes()[:4000])
    code, _, err = cli("validate", str(BUNDLED), str(truncated))
    assert code == 2
    assert f"{truncated}: " in err


@pytest.mark.slow  # an ONNX export (~35 s on 2 busy cores)
def test_onnx_reference_is_named_onnx_runtime(cli, tmp_path, monkeypatch):
    import json

    from bnnconvert.export import export

    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path / "cache"))
    onnx = BUNDLED.parent / "torch_digits" / "model.onnx"
    exported = export(onnx, output_dir=tmp_path / "out")
    assert exported.parity.reference == "ONNX Runtime"
    code, out, _ = cli("validate", str(onnx), str(exported.model_path), "--samples", "16")
    assert code == 0
    assert ", accuracy ONNX Runtime 100.00% / flatbuffer 100.00%" in out.splitlines()[0]
    assert "(ONNX Runtime outputs: cache miss)" in out and "keras" not in out.lower()
    code, out, _ = cli("validate", str(onnx), str(exported.model_path), "--samples", "16", "--json")
    assert json.loads(out)["reference"] == "ONNX Runtime"
