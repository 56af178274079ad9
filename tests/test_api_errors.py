"""Errors name the Python keyword argument in the API and the flag on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import BUNDLED, relu_model

import bnnconvert
from bnnconvert.cli.main import run
from bnnconvert.errors import for_command_line

_SYNTAX = (
    "give a preset (imagenet, digits, unit, symmetric, pixels) and/or ;-separated key=value "
    "items (mean, std, scale, resize, crop, order, fit), e.g. imagenet;order=bgr"
)


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "taken"
    path.write_text("x")
    return path


# (API keyword arguments, CLI arguments, the API's message, the command line's message)
CASES = [
    pytest.param(
        lambda tmp: {"target": "riscv"},
        lambda tmp: ["--target", "riscv"],
        "Expected target= to be one of arm64, armv7, x86_64, xcore, got 'riscv'",
        "Expected --target to be one of arm64, armv7, x86_64, xcore, got 'riscv'",
        id="target",
    ),
    pytest.param(
        lambda tmp: {"input_shape": (32, 32)},
        lambda tmp: ["--input-shape", "32,32"],
        "Expected input_shape= as three positive whole numbers (height, width, channels), "
        "got (32, 32); e.g. (224, 224, 3)",
        "Expected --input-shape as H,W,C (e.g. 224,224,3), got '32,32'",
        id="input-shape",
    ),
    pytest.param(
        lambda tmp: {"preprocessing": "imagenet;gamma=2"},
        lambda tmp: ["--preprocessing", "imagenet;gamma=2"],
        "Expected key=value with a known key after the preset, got 'gamma=2' in "
        f"preprocessing= 'imagenet;gamma=2'; {_SYNTAX}",
        "Expected key=value with a known key after the preset, got 'gamma=2' in "
        f"--preprocessing 'imagenet;gamma=2'; {_SYNTAX}",
        id="preprocessing",
    ),
    pytest.param(
        lambda tmp: {"output_dir": _a_file(tmp)},
        lambda tmp: ["-o", str(_a_file(tmp))],
        "cannot write to {tmp}/taken: it is a file, not a directory; "
        "pick a directory with output_dir=",
        "cannot write to {tmp}/taken: it is a file, not a directory; pick a directory with -o",
        id="output-dir",
    ),
    pytest.param(
        lambda tmp: {"float_weights": "fp8"},
        lambda tmp: ["--float-weights", "fp8"],
        "Expected float_weights= to be one of fp32, fp16, int8, got 'fp8'",
        "Expected --float-weights to be one of fp32, fp16, int8, got 'fp8'",
        id="float-weights",
    ),
    pytest.param(
        lambda tmp: {"calibration": tmp / "x.npz"},
        lambda tmp: ["--calibration", str(tmp / "x.npz")],
        "Expected calibration= only together with int8_activations=; add it or drop calibration=",
        "Expected --calibration only together with --int8-activations; add it or drop "
        "--calibration",
        id="calibration",
    ),
]


@pytest.fixture
def no_loading(monkeypatch):
    """Every case is an argument checked before the checkpoint is loaded."""
    from bnnconvert import checkpoint

    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: pytest.fail("loaded"))


@pytest.mark.parametrize(("kwargs", "argv", "api_message", "cli_message"), CASES)
def test_export_errors_name_the_argument_of_each_surface(
    tmp_path, capsys, no_loading, kwargs, argv, api_message, cli_message
) -> None:
    call = {"output_dir": tmp_path / "out", **kwargs(tmp_path)}
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        bnnconvert.export(BUNDLED, **call)
    assert str(info.value) == api_message.format(tmp=tmp_path)
    assert run(["export", str(BUNDLED), "-o", str(tmp_path / "out"), *argv(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: " + cli_message.format(tmp=tmp_path)


def test_export_optimize_false_is_no_optimize_and_anything_else_is_refused(tmp_path) -> None:
    """optimize=False used to be taken as the default (every pass ran), and a string
    raised a raw TypeError."""
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        bnnconvert.export(BUNDLED, output_dir=tmp_path / "out", optimize="none")
    assert str(info.value) == (
        "Expected optimize= as True, False (--no-optimize) or a "
        "bnnconvert.passes.OptimizeOptions, got 'none'"
    )
    raw = bnnconvert.export(BUNDLED, output_dir=tmp_path / "raw", optimize=False, validate=False)
    assert raw.passes == [] and raw.optimized_model_bytes == raw.lce_model_bytes


def test_validate_samples_names_the_argument_of_each_surface(tmp_path, capsys) -> None:
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        bnnconvert.validate(BUNDLED, tmp_path / "m.tflite", samples=0)
    assert str(info.value) == "Expected samples= of at least 1, got 0"
    assert run(["validate", str(BUNDLED), str(tmp_path / "m.tflite"), "--samples", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: Expected --samples of at least 1, got 0"


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        (
            "pass input_shape= (height, width, channels)",
            "pass --input-shape (height, width, channels)",
        ),
        (
            "Expected each key once in preprocessing=, got scale= twice",
            "Expected each key once in --preprocessing, got scale= twice",
        ),
        ("exported with target=arm64", "exported with target=arm64"),  # a value, not the argument
        ("the target= of this run and its output_dir=.", "the --target of this run and its -o."),
        ("retarget= stays", "retarget= stays"),
    ],
)
def test_for_command_line_maps_only_bare_argument_names(message, shown) -> None:
    assert for_command_line(message) == shown


def _custom_objects_file(tmp: Path) -> Path:
    path = tmp / "objects.py"
    path.write_text("X = 1\n")
    return path


# (command, API keyword arguments, CLI arguments, the API's message, the command line's)
CHECKPOINT_CASES = [
    pytest.param(
        "export",
        lambda tmp: {"num_classes": 0},
        lambda tmp: ["--num-classes", "0"],
        "Expected num_classes= to be a whole number from 1 to 100000, got 0",
        "Expected --num-classes to be a whole number from 1 to 100000, got 0",
        id="num-classes",
    ),
    pytest.param(
        "export",
        lambda tmp: {"arch": "binarydensenet28"},
        lambda tmp: ["--arch", "binarydensenet28"],
        f"{BUNDLED}/model.keras: arch= expects a weights .h5 file (e.g. "
        "binary_densenet_28_weights.h5), got .keras",
        f"{BUNDLED}/model.keras: --arch expects a weights .h5 file (e.g. "
        "binary_densenet_28_weights.h5), got .keras",
        id="arch",
    ),
    *(
        pytest.param(
            command,
            lambda tmp: {"custom_objects": _custom_objects_file(tmp)},
            lambda tmp: ["--custom-objects", str(_custom_objects_file(tmp))],
            "custom_objects= runs the given file's code: pass trust_checkpoint= with it",
            "--custom-objects runs the given file's code: pass --trust-checkpoint with it",
            id=f"custom-objects-{command}",
        )
        for command in ("export", "validate")
    ),
    pytest.param(
        "validate",
        lambda tmp: {"data": tmp / "nonexistent.npz"},
        lambda tmp: ["--data", str(tmp / "nonexistent.npz")],
        "data= {tmp}/nonexistent.npz: no such file or directory; give an .npz (x, optional y) "
        "or a folder of images",
        "--data {tmp}/nonexistent.npz: no such file or directory; give an .npz (x, optional y) "
        "or a folder of images",
        id="data",
    ),
]


@pytest.mark.parametrize(
    ("command", "kwargs", "argv", "api_message", "cli_message"), CHECKPOINT_CASES
)
def test_checkpoint_and_data_errors_name_the_argument_of_each_surface(
    tmp_path, capsys, bundled_export, command, kwargs, argv, api_message, cli_message
) -> None:
    if command == "export":
        call, args = {"output_dir": tmp_path / "out"}, ["-o", str(tmp_path / "out")]
        function = bnnconvert.export
    else:
        call, args = {"model_path": bundled_export.model_path}, [str(bundled_export.model_path)]
        function = bnnconvert.validate
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        function(BUNDLED, **call, **kwargs(tmp_path))
    assert str(info.value) == api_message.format(tmp=tmp_path)
    assert run([command, str(BUNDLED), *args, *argv(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == "error: " + cli_message.format(tmp=tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "argv", "api_message"),
    [
        ({"runs": 0}, ["--runs", "0"], "Expected runs= of at least 1, got 0"),
        ({"threads": 0}, ["--threads", "0"], "Expected threads= of at least 1, got 0"),
        ({"device": "usb"}, ["--device", "usb"],
         "Expected device= local, adb, adb:SERIAL or ssh://user@host[:port], got 'usb'"),
        ({"op_profiling": True}, ["--op-profiling"],
         "Per-op profiling needs lce_benchmark_model; LCE's Python interpreter has none: pass "
         "benchmark_binary= PATH or drop op_profiling="),
    ],
)  # fmt: skip
def test_bench_errors_name_the_argument_of_each_surface(
    tmp_path, capsys, kwargs, argv, api_message
) -> None:
    model = tmp_path / "m.tflite"
    model.write_bytes(relu_model((1, 4)))
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        bnnconvert.bench(model, **kwargs)
    assert str(info.value) == api_message
    assert run(["bench", str(model), *argv]) == 2
    assert capsys.readouterr().err.strip() == "error: " + for_command_line(api_message)


def test_arguments_that_would_be_ignored_are_refused(tmp_path, capsys) -> None:
    """num_classes= without arch= and arch= on an ONNX file used to be ignored silently."""
    onnx = BUNDLED.parent / "torch_digits" / "model.onnx"
    for kwargs, argv, message in [
        ({"num_classes": 5}, [str(BUNDLED), "--num-classes", "5"],
         "Expected num_classes= only together with arch= (a weights-only .h5); a full "
         "checkpoint has its own classes: drop num_classes="),
        ({"arch": "binarydensenet28"}, [str(onnx), "--arch", "binarydensenet28"],
         "Expected arch= only for a weights-only .h5; an ONNX file holds its own "
         "architecture: drop arch="),
    ]:  # fmt: skip
        with pytest.raises(bnnconvert.BnnConvertError) as info:
            bnnconvert.export(argv[0], output_dir=tmp_path / "out", **kwargs)
        assert str(info.value) == message
        assert run(["export", *argv, "-o", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err.strip() == "error: " + for_command_line(message)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bnnconvert.export(None), "Expected ckpt= as a file or folder path, got None"),
        (lambda: bnnconvert.inspect(5), "Expected model= as a file or folder path, got 5"),
        (lambda: bnnconvert.validate(BUNDLED, 5),
         "Expected model_path= as a file or folder path, got 5"),
        (lambda: bnnconvert.validate(BUNDLED, "m.tflite", samples="4"),
         "Expected samples= as a whole number, got '4'"),
        (lambda: bnnconvert.bench("m.tflite", runs="5"),
         "Expected runs= as a whole number, got '5'"),
    ],
)  # fmt: skip
def test_arguments_of_the_wrong_type_are_one_line(call, message) -> None:
    """They used to raise raw TypeErrors from deep inside ('<' not supported ...)."""
    with pytest.raises(bnnconvert.BnnConvertError) as info:
        call()
    assert str(info.value) == message
