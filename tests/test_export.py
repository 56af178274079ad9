"""``export`` end to end on the bundled model, and its atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import _tf, atomic, ir, metadata
from bnnconvert.cli.main import run
from bnnconvert.export import export
from bnnconvert.preprocessing import parse_preprocessing

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "models" / "digits"

# bundled_export (conftest.py): the bundled model exported once per session, arm64.


def test_export_writes_model_and_report(bundled_export) -> None:
    data = bundled_export.model_path.read_bytes()
    report = json.loads(bundled_export.report_path.read_text())
    assert report["sha256"] == bundled_export.sha256
    assert report["sizes"]["model_bytes"] == len(data)
    assert report["target"]["name"] == "arm64"
    assert report["signature"]["inputs"][0]["shape"] == [1, 32, 32, 1]
    assert report["op_counts"]["LceBconv2d"] == 9
    assert report["versions"]["larq-compute-engine"] == "0.16.0"
    assert sum(report["op_counts"].values()) == len(ir.read(data).subgraphs[0].operators)


def test_audit_says_the_batch_norms_before_signs_were_folded(bundled_export) -> None:
    notes = [d for d in bundled_export.audit.diagnostics if d.code == "bn-before-sign"]
    assert len(notes) == 9
    assert all("fold_sign_scale folded every one" in d.fix for d in notes)


def test_parity_check_is_marked_lossy_only_for_lossy_options(bundled_export, tmp_path) -> None:
    from bnnconvert.passes import OptimizeOptions

    recorded = json.loads(bundled_export.report_path.read_text())["validation"]
    assert recorded == {**recorded, "lossy": False, "passed": True}
    assert bundled_export.parity.passed
    fp16 = export(BUNDLED, output_dir=tmp_path, optimize=OptimizeOptions(float_weights="fp16"))
    assert fp16.parity_dict()["lossy"] is True
    assert fp16.parity.top1_agreement == 1.0


def test_export_md_says_what_export_json_says(bundled_export) -> None:
    markdown = (bundled_export.model_path.parent / "export.md").read_text()
    for heading in ("## Signature", "## Parity check", "## Passes", "## Metadata", "## Timings"):
        assert heading in markdown
    assert "| fold_sign_scale | 9 |" in markdown
    assert "- verdict: pass" in markdown
    assert "| serving_default_image:0 | [1, 32, 32, 1] | float32 | – |" in markdown
    assert "- labels: 10: 0, 1, 2, 3, 4, ..." in markdown
    assert "- data: 8 samples of test_split.npz" in markdown  # no directory paths


def test_export_result_repr_is_short(bundled_export) -> None:
    text = repr(bundled_export)
    assert text.startswith("ExportResult(") and "target='arm64'" in text
    assert "parity=pass)" in text and len(text) < 200


def test_bundled_export_carries_labels_and_preprocessing(bundled_export) -> None:
    embedded = metadata.read_metadata(bundled_export.model_path.read_bytes())
    assert embedded is not None
    assert embedded["labels"] == [str(digit) for digit in range(10)]
    assert embedded["model"]["name"] == "binary_densenet_digits"
    assert embedded["producer"]["target"] == "arm64"
    spec = parse_preprocessing((BUNDLED / "preprocessing.txt").read_text().strip())
    assert embedded["preprocessing"]["mean"] == list(spec.mean)


def test_bundled_model_predicts_like_keras_on_every_test_sample(bundled_export) -> None:
    keras = _tf.keras()
    _tf.larq()
    model = keras.models.load_model(BUNDLED / "model.keras", compile=False)
    split = np.load(BUNDLED / "test_split.npz")
    x, y = split["x"], split["y"]
    keras_top1 = model.predict(x, verbose=0).argmax(axis=1)
    interpreter = _tf.lce_interpreter(
        bundled_export.model_path.read_bytes(), use_indirect_bgemm=True
    )
    lce_top1 = np.asarray(interpreter.predict(x)).argmax(axis=1)
    assert (lce_top1 == keras_top1).mean() == 1.0
    assert (lce_top1 == y).mean() == (keras_top1 == y).mean() >= 0.90


@pytest.mark.parametrize(
    "target",  # armv7 and x86_64 write arm64's bytes (docs/api.md's test exports x86_64)
    [
        "xcore",
        pytest.param("armv7", marks=pytest.mark.slow),
        pytest.param("x86_64", marks=pytest.mark.slow),
    ],
)
def test_other_targets_export_and_run(tmp_path, target) -> None:
    result = export(BUNDLED, target=target, output_dir=tmp_path)
    if target == "xcore":
        # LCE 0.16's xcore back end leaves each binary conv as
        # LceQuantize -> LceDequantize -> float CONV_2D for XMOS's own tools.
        assert "LceBconv2d" not in result.op_counts
        assert result.op_counts["LceDequantize"] == 9
    else:
        assert result.op_counts.get("LceBconv2d") == 9
    x = np.load(BUNDLED / "test_split.npz")["x"][:4]
    out = np.asarray(_tf.lce_interpreter(result.model_path.read_bytes()).predict(x))
    assert out.shape == (4, 10)


def test_bad_target_is_one_line(capsys, tmp_path) -> None:
    assert run(["export", str(BUNDLED), "--target", "riscv", "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("Expected --target to be one of arm64, armv7, x86_64, xcore, got 'riscv'")


def test_bad_input_shape_is_one_line(capsys, tmp_path) -> None:
    assert run(["export", str(BUNDLED), "--input-shape", "32,32", "-o", str(tmp_path)]) == 2
    assert "Expected --input-shape as H,W,C" in capsys.readouterr().err


def test_input_shape_rebuilds_the_model(bundled_export, tmp_path) -> None:
    result = export(BUNDLED, target="arm64", output_dir=tmp_path, input_shape=(40, 40, 1))
    assert result.inputs[0]["shape"] == [1, 40, 40, 1]
    # An app looks the input and outputs up by name: the rebuilt model keeps them.
    (signature,) = ir.read(result.model_path.read_bytes()).signature_defs
    assert (list(signature.inputs), list(signature.outputs)) == (["image"], ["head_softmax"])
    for side in ("inputs", "outputs"):
        names = [t["name"] for t in getattr(result, side)]
        assert names == [t["name"] for t in getattr(bundled_export, side)]


def test_failed_write_keeps_the_old_model(tmp_path, monkeypatch) -> None:
    target = tmp_path / "model.tflite"
    target.write_bytes(b"old complete model")

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    with pytest.raises(OSError):
        atomic.write_bytes(target, b"new model" * 1000)
    assert target.read_bytes() == b"old complete model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]


def test_disk_full_during_export_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", disk_full)
    assert run(["export", str(BUNDLED), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: could not write to {tmp_path}: the disk is full; free space or pick another "
        "directory with -o"
    )
    assert not (tmp_path / "model.tflite").exists()


def test_a_write_failing_after_the_model_keeps_the_last_export_whole(tmp_path, monkeypatch) -> None:
    """The disk fills up while the reports are written: the folder still holds the last
    export's model and reports, not a new model beside the old reports."""
    assert run(["export", str(BUNDLED), "-o", str(tmp_path), "--no-validate"]) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    calls: list[int] = []

    def full_on_the_second_file(fd: int) -> None:
        calls.append(fd)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "fsync", full_on_the_second_file)
    argv = ["export", str(BUNDLED), "-o", str(tmp_path), "--no-validate", "--no-optimize"]
    assert run(argv) == 2
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("x")
    return path


def _a_folder_named(tmp_path: Path, name: str) -> Path:
    """An output directory where ``name`` (one of export's output files) is a folder."""
    (tmp_path / "out" / name).mkdir(parents=True)
    return tmp_path / "out"


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        (
            lambda tmp: ["-o", str(_a_file(tmp))],
            "error: cannot write to {tmp}/taken: it is a file, not a directory; "
            "pick a directory with -o",
        ),
        (
            lambda tmp: ["-o", str(_a_file(tmp) / "sub")],
            "error: cannot write to {tmp}/taken/sub: a part of the path is a file, not a "
            "directory; pick another path with -o",
        ),
        (
            lambda tmp: ["-o", "/proc/bnnconvert-test"],
            "error: cannot write to /proc/bnnconvert-test: this location cannot hold new files; "
            "pick another directory with -o",
        ),
        (
            lambda tmp: ["-o", str(tmp / "out"), "--labels", str(tmp / "missing.txt")],
            "error: Expected a label file at {tmp}/missing.txt, found none; give --labels a "
            "text file with one label per line",
        ),
        (
            lambda tmp: ["-o", str(_a_folder_named(tmp, "model.tflite"))],
            "error: cannot write to {tmp}/out/model.tflite: it is a directory; remove it or "
            "pick another directory with -o",
        ),
        (
            lambda tmp: ["-o", str(_a_folder_named(tmp, "export.md"))],
            "error: cannot write to {tmp}/out/export.md: it is a directory; remove it or pick "
            "another directory with -o",
        ),
    ],
    ids=[
        "output-is-a-file",
        "output-under-a-file",
        "output-in-proc",
        "missing-labels",
        "model-file-is-a-folder",
        "report-file-is-a-folder",
    ],
)
def test_bad_arguments_fail_before_loading(tmp_path, capsys, monkeypatch, arguments, expected):
    from bnnconvert import checkpoint

    def never(*args, **kwargs):
        raise AssertionError("the checkpoint was loaded before the arguments were checked")

    monkeypatch.setattr(checkpoint, "load", never)
    assert run(["export", str(BUNDLED), *arguments(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == expected.format(tmp=tmp_path)


def test_unknown_preprocessing_preset_fails_before_loading(tmp_path, capsys, monkeypatch):
    from bnnconvert import checkpoint

    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))
    code = run(["export", str(BUNDLED), "-o", str(tmp_path), "--preprocessing", "imagenett"])
    assert code == 2
    assert "imagenett" in capsys.readouterr().err


def test_killed_export_never_leaves_a_partial_model(tmp_path) -> None:
    """SIGKILL the CLI at several moments; model.tflite is always old or complete."""
    out = tmp_path / "out"
    out.mkdir()
    old = b"previous complete export"
    (out / "model.tflite").write_bytes(old)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "bnnconvert", "export", str(BUNDLED), "-o", str(out)]
    outcomes = set()
    # The last run is not killed (a loaded CI machine can take over 30 s to export).
    for delay in (0.5, 2.0, 4.0, 6.0, 8.0, 600.0):
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            process.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
        data = (out / "model.tflite").read_bytes()
        if data == old:
            outcomes.add("old")
        else:
            ir.read(data)  # complete, valid flatbuffer
            outcomes.add("new")
            (out / "model.tflite").write_bytes(old)
        time.sleep(0.1)
    assert "old" in outcomes and "new" in outcomes
    leftovers = [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    # A SIGKILL can leave a hidden temp file; the next export removes it.
    run(["export", str(BUNDLED), "-o", str(out)])
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")], leftovers


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("digits/model.keras", "digits-arm64"),
        ("digits", "digits-arm64"),
        ("zoo/binary_densenet_28_weights.h5", "binary_densenet_28_weights-arm64"),
        ("runs/7/checkpoint.h5", "7-arm64"),
    ],
    ids=["generic-file-stem", "directory", "named-file", "generic-checkpoint-stem"],
)
def test_default_output_dir_is_named_after_the_model(tmp_path, relative, expected) -> None:
    from bnnconvert.export import default_output_dir

    path = tmp_path / relative
    if path.suffix:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"")
    else:
        path.mkdir(parents=True)
    assert default_output_dir(path, "arm64") == Path("exports") / expected


def test_failed_export_leaves_no_folder_behind(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    assert run(["export", str(tmp_path / "missing.keras")]) == 2
    assert run(["export", str(tmp_path / "missing.keras"), "-o", str(tmp_path / "a/b")]) == 2
    capsys.readouterr()
    assert list(tmp_path.iterdir()) == []  # neither exports/missing-arm64 nor a/b
