"""Hostile inputs end in one line and exit 2, without hanging or costing memory.

One test per kind from issue 14 (items 5-7): non-regular and oversized input
files, flatbuffers declaring huge inputs, decompression-bomb images, control
characters in strings from files, interpreter failures. The flatbuffers are
built with the project's own IR writer; nothing here needs TensorFlow except
the interpreter test.
"""

from __future__ import annotations

import importlib
import os
import struct
import subprocess
import sys
import threading
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import BUNDLED, relu_model

from bnnconvert import ir
from bnnconvert.cli.main import run
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.limits import MAX_MODEL_BYTES
from bnnconvert.preprocessing import load_image
from bnnconvert.validate import validate

CLI = [sys.executable, "-m", "bnnconvert"]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The single ``error: ...`` line a failed command printed (nothing on stdout)."""
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err[len("error: ") :].rstrip("\n")


# --- input files: stat before reading -------------------------------------------------


def test_fifo_is_refused_without_blocking(tmp_path):
    model, onnx = tmp_path / "model.tflite", tmp_path / "model.onnx"
    os.mkfifo(model)
    os.mkfifo(onnx)
    tflite_fifo = f"{model} is a FIFO (named pipe); give the path of a .tflite model"
    cases = [
        (["inspect", str(model)], tflite_fifo),
        (["bench", str(model)], tflite_fifo),
        (["export", str(onnx), "--target", "arm64", "-o", str(tmp_path / "out")],
         f"{onnx} is a FIFO (named pipe); give the path of an .onnx model"),
    ]  # fmt: skip
    for command, message in cases:
        done = subprocess.run(
            [*CLI, *command], capture_output=True, text=True, timeout=120, check=False
        )
        assert (done.returncode, done.stderr) == (2, f"error: {message}\n")


def test_dev_zero_is_not_read(capsys):
    assert run(["inspect", "/dev/zero"]) == 2
    assert one_error_line(capsys) == (
        "/dev/zero is a character device; give the path of a .tflite model"
    )


def test_sparse_file_over_the_cap_is_refused_before_reading(tmp_path, capsys):
    big = tmp_path / "big.tflite"
    with open(big, "wb") as f:
        f.truncate(2 << 30)  # 2 GiB, sparse: no disk used
    tracemalloc.start()
    try:
        assert run(["inspect", str(big)]) == 2
        assert run(["validate", str(tmp_path), str(big)]) == 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20
    message = f"{big} is 2048 MiB, more than the 1024 MiB bnnconvert reads as a .tflite model; "
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"error: {message}check that this is the right file"] * 2


def test_identifier_is_checked_on_the_first_bytes(tmp_path):
    """A file under the cap without ``TFL3`` is refused after reading 8 bytes, not all of it."""
    fake = tmp_path / "zeros.tflite"
    size = MAX_MODEL_BYTES - 1
    with open(fake, "wb") as f:
        f.truncate(size)
    tracemalloc.start()
    try:
        with pytest.raises(FlatbufferProblem) as info:
            ir.load_bytes(fake)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert str(info.value) == (
        f"{fake}: not a TFLite flatbuffer: bytes 4..8 of this {size}-byte file are "
        "b'\\x00\\x00\\x00\\x00', not the identifier b'TFL3'; give a .tflite model file"
    )


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(UsageProblem) as info:
        ir.load_bytes(tmp_path)
    assert str(info.value) == f"{tmp_path} is a directory; give the path of a .tflite model"
    missing = tmp_path / "nope.tflite"
    with pytest.raises(UsageProblem) as info:
        ir.load_bytes(missing)
    assert str(info.value) == f"{missing}: no such file; give the path of a .tflite model"


# --- declared inputs: refused before anything is allocated ----------------------------

HUGE_INPUT = (
    "the model declares input 'in' (subgraph 0) of shape [1, 30000, 30000] float32, "
    "3433 MiB, over bnnconvert's 64 MiB limit per input; "
    "export the model with a smaller input shape"
)


@pytest.fixture
def huge_input_model(tmp_path) -> Path:
    path = tmp_path / "huge.tflite"
    path.write_bytes(relu_model((1, 30000, 30000)))
    assert path.stat().st_size < 5000
    return path


@pytest.mark.parametrize("command", ["bench", "validate"])
def test_huge_declared_input_is_refused(huge_input_model, tmp_path, capsys, command):
    argv = [command, str(huge_input_model)]
    if command == "validate":
        argv.insert(1, str(tmp_path / "checkpoint-not-needed"))
    tracemalloc.start()
    try:
        assert run(argv) == 2
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20
    named = f"{huge_input_model}: " if command == "bench" else ""
    assert one_error_line(capsys) == named + HUGE_INPUT


def test_huge_intermediate_tensor_is_refused():
    graph = ir.Subgraph(
        tensors=[
            ir.Tensor("in", [1, 4], "float32"),
            ir.Tensor("blowup", [1, 20000, 20000], "float32"),
        ],
        operators=[ir.Operator("RELU", [0], [1])],
        inputs=[0],
        outputs=[1],
    )
    model = ir.read(ir.write(ir.Model(subgraphs=[graph])))
    with pytest.raises(FlatbufferProblem) as info:
        ir.check_declared_sizes(model)
    assert str(info.value) == (
        "the model declares tensor 'blowup' (subgraph 0) of shape [1, 20000, 20000] float32, "
        "1526 MiB, over bnnconvert's 1024 MiB limit per tensor; "
        "export the model with a smaller input shape"
    )
    ir.check_declared_sizes(ir.read(relu_model((1, 224, 224, 3))))  # ordinary sizes pass


# --- images: size-checked before decoding ---------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header declares ``width`` x ``height`` 1-bit gray pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * 64)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def test_png_bomb_header_is_one_line_exit_2(tmp_path, capsys, bundled_export):
    folder = tmp_path / "images"
    folder.mkdir()
    bomb = folder / "bomb.png"
    bomb.write_bytes(png_header_only(50000, 50000))
    assert bomb.stat().st_size < 150
    # A real checkpoint and its export: validate checks their origin before the data.
    model = bundled_export.model_path
    assert run(["validate", str(BUNDLED), str(model), "--data", str(folder)]) == 2
    assert one_error_line(capsys) == (
        f"{bomb} declares an image too large for Pillow, over bnnconvert's 40 megapixel "
        "limit (checked before decoding); give a smaller image"
    )


def test_one_bit_png_over_the_pixel_cap_is_refused_before_decoding(tmp_path):
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.new("1", (8000, 6000)).save(path)  # 48 megapixels in a few KB
    assert path.stat().st_size < 20_000
    with pytest.raises(UsageProblem) as info:
        load_image(path, 32, 32)
    assert str(info.value) == (
        f"{path} declares 8000x6000 pixels, over bnnconvert's 40 megapixel limit "
        "(checked before decoding); give a smaller image"
    )


def test_large_jpeg_is_decoded_reduced(tmp_path):
    from PIL import Image

    path = tmp_path / "big.jpg"
    Image.new("RGB", (8000, 6000), (200, 100, 50)).save(path, quality=50)
    rgb = load_image(path, 224, 224)
    assert rgb.shape == (750, 1000, 3) and rgb.dtype == np.uint8  # decoded at 1/8
    assert abs(int(rgb[0, 0, 0]) - 200) <= 3


def test_image_near_the_cap_costs_bounded_memory(tmp_path):
    """A 1-bit 36-megapixel PNG: decoded and preprocessed in well under 1 GB."""
    from PIL import Image

    path = tmp_path / "near.png"
    Image.new("1", (6000, 6000), 1).save(path)
    # VmHWM, not ru_maxrss: the latter keeps the forked parent's peak across exec, and a
    # pytest process that has imported TensorFlow is gigabytes before the child starts.
    code = (
        "import re, sys; from bnnconvert.preprocessing import load_image, preprocess, "
        "PRESETS; x = preprocess(load_image(sys.argv[1], 32, 32), PRESETS['imagenet'], 32, 32); "
        "status = open('/proc/self/status').read(); "
        r"print(x.shape, re.search(r'VmHWM:\s+(\d+) kB', status).group(1))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120
    )
    shape, peak_kb = done.stdout.rsplit(" ", 1)
    assert shape == "(1, 32, 32, 3)"
    assert int(peak_kb) < 700_000  # float64 of the whole photo alone would be 864 MB


def test_unreadable_image_and_broken_npz(tmp_path, bundled_export):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    with pytest.raises(UsageProblem) as info:
        load_image(path, 32, 32)
    assert str(info.value) == (
        f"{path}: not a readable image (Truncated File Read); replace or remove it"
    )
    npz = tmp_path / "data.npz"
    npz.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(UsageProblem, match=r"data\.npz: expected an \.npz with an array 'x'"):
        validate(BUNDLED, bundled_export.model_path, data=npz)


# --- terminal safety: strings from files never reach the terminal raw -----------------

TITLE = "\x1b]0;pwned\x07"  # sets the terminal's title
CLEAR = "\x1b[2J"  # clears the screen


@pytest.fixture
def hostile_names_model(tmp_path) -> Path:
    from bnnconvert.metadata import embed_metadata

    data = relu_model((1, 3), name=f"in{TITLE}")
    data = embed_metadata(
        data,
        name=f"model{CLEAR}",
        target="arm64",
        labels=[f"cat{TITLE}", f"{CLEAR}dog", "bird\u202e"],
        description=f"{CLEAR}described",
    )
    path = tmp_path / "hostile.tflite"
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("mode", [[], ["--json"], ["--markdown"]], ids=["table", "json", "md"])
def test_inspect_shows_control_characters_as_escapes(hostile_names_model, capsys, mode):
    assert run(["inspect", str(hostile_names_model), *mode]) == 0
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert not {"\x1b", "\x07", "\u202e"} & set(stream)
    if not mode:  # made visible
        assert "model\\x1b[2J v1" in captured.out  # the model name from the metadata
        assert "3: cat\\x1b]0;pwned\\x07, \\x1b[2Jdog, bird\\u202e" in captured.out  # labels
        assert "input in\\x1b]0;pwned\\x07" in captured.out  # the input tensor's name


def test_error_lines_make_controls_newlines_and_markup_visible(capsys):
    from bnnconvert.cli import output

    output.error(f"layer 'a{CLEAR}b' [/red] failed\nsecond line{TITLE}")
    assert capsys.readouterr().err == (
        "error: layer 'a\\x1b[2Jb' [/red] failed\\nsecond line\\x1b]0;pwned\\x07\n"
    )
    output.note("kept\nnewline\tand tab \x9b")
    assert capsys.readouterr().err == "kept\nnewline and tab \\x9b\n"  # rich expands tabs


# --- no tracebacks: the interpreter's RuntimeErrors become one line -------------------

UNRESOLVED_FOO = (
    "the model uses custom op Foo, which LCE's interpreter does not provide; bnnconvert "
    "models need only TFLite builtins and LCE ops"
)


def test_interpreter_load_failures_name_the_cause():
    from bnnconvert import _tf

    with pytest.raises(FlatbufferProblem) as info:
        _tf.lce_interpreter(relu_model(opcode="Foo"))
    assert str(info.value) == (
        f"LCE's interpreter cannot load the model: {UNRESOLVED_FOO}; it printed: "
        "Encountered unresolved custom op: Foo. / Node number 0 (Foo) failed to prepare."
    )
    graph = ir.read(relu_model())
    graph.subgraphs[0].operators[0].version = 99
    with pytest.raises(FlatbufferProblem) as info:
        _tf.lce_interpreter(ir.write(graph))
    assert str(info.value) == (
        "LCE's interpreter cannot load the model: LCE's interpreter is older than the model "
        "(it has no RELU version 99); install the larq-compute-engine version that converted "
        "the model; it printed: Didn't find op for builtin opcode 'RELU' version '99'. An older "
        "version of this builtin might be supported. Are you using an old TFLite binary with "
        "a newer model? / Registration failed."
    )


def test_interpreter_predict_failure_is_one_line():
    from bnnconvert import _tf

    interpreter = _tf.lce_interpreter(relu_model())
    assert interpreter.input_shapes == [(1, 4)]  # LCE's own attributes pass through
    with pytest.raises(FlatbufferProblem) as info:
        interpreter.predict(np.zeros((1, 4), np.int32))
    assert str(info.value) == (
        "LCE's interpreter failed to run the model: input 'in' must be FLOAT32, but INT32 was given"
    )


def test_bench_on_an_unresolved_custom_op_is_one_line(tmp_path, capsys):
    model = tmp_path / "foo.tflite"
    model.write_bytes(relu_model(opcode="Foo"))
    assert run(["bench", str(model), "--runs", "1", "--no-autotune"]) == 2
    assert one_error_line(capsys) == (
        f"the runner failed on local (exit 1): {UNRESOLVED_FOO}; it printed: "
        "Encountered unresolved custom op: Foo. / Node number 0 (Foo) failed to prepare."
    )


def test_memory_error_is_one_line_exit_2(monkeypatch, capsys):
    def exhausted(model):
        raise MemoryError

    monkeypatch.setattr(importlib.import_module("bnnconvert.inspect"), "inspect_model", exhausted)
    assert run(["inspect", "model.tflite"]) == 2
    assert one_error_line(capsys) == (
        "ran out of memory; use a smaller model or input, fewer --samples, "
        "or a machine with more memory"
    )


def test_a_bug_is_one_line_exit_1_and_a_traceback_with_debug(monkeypatch, capsys):
    def broken(model):
        raise TypeError("unsupported operand")

    monkeypatch.setattr(importlib.import_module("bnnconvert.inspect"), "inspect_model", broken)
    assert run(["inspect", "model.tflite"]) == 1
    assert one_error_line(capsys) == (
        "internal error (TypeError: unsupported operand); this is a bug in bnnconvert: "
        "rerun with --debug and report the traceback"
    )
    with pytest.raises(TypeError, match="unsupported operand"):
        run(["inspect", "model.tflite", "--debug"])
    assert "BNNCONVERT_DEBUG" not in os.environ  # --debug ends with its run


def call_within(seconds: float, function, *args):
    """``function(*args)`` in a daemon thread; fail (not hang) if it blocks past ``seconds``."""
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = function(*args)
        except Exception as e:  # handed to the test
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"{function.__name__} blocked for {seconds} s"
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def test_side_inputs_that_are_fifos_do_not_block(tmp_path):
    from bnnconvert.bench.measure import recorded_runtime
    from bnnconvert.bench.result import ModelFile
    from bnnconvert.metadata import load_labels

    labels = tmp_path / "labels.txt"
    os.mkfifo(labels)
    with pytest.raises(UsageProblem) as info:
        call_within(10, load_labels, labels)
    assert str(info.value) == f"{labels} is a FIFO (named pipe); give the path of a label file"
    model = tmp_path / "model.tflite"
    model.write_bytes(relu_model())
    os.mkfifo(tmp_path / "export.json")  # bench reads the export report beside a model
    assert call_within(10, recorded_runtime, ModelFile(str(model), "model", "0" * 64, 1)) is None


def test_file_strings_that_look_like_markup_print_as_text(capsys):
    from rich.table import Table

    from bnnconvert.cli import output

    table = Table()
    table.add_column("layer")
    table.add_row(f"conv[/oops]{CLEAR}")  # invalid markup: rich would raise MarkupError
    output.stdout.print(table)
    output.stdout.print("top float layers by MACs: dense[/] 50%", highlight=False)
    out = capsys.readouterr().out
    assert "conv[/oops]\\x1b[2J" in out and "top float layers by MACs: dense[/] 50%\n" in out


def test_npz_declaring_huge_arrays_is_refused_before_inflating(tmp_path, capsys, bundled_export):
    npz = tmp_path / "bomb.npz"
    np.savez_compressed(npz, x=np.zeros((4, 32, 32, 3), np.float32))
    data = bytearray(npz.read_bytes())
    central = data.index(b"PK\x01\x02")  # the central directory entry of x.npy
    struct.pack_into("<I", data, central + 24, 0x7FFF_FFFF)  # declared uncompressed size
    npz.write_bytes(bytes(data))
    model = bundled_export.model_path
    assert run(["validate", str(BUNDLED), str(model), "--data", str(npz)]) == 2
    assert one_error_line(capsys) == (
        f"{npz}: its arrays inflate to 2048 MiB, more than the 1024 MiB bnnconvert reads "
        "as test data; give fewer samples"
    )


def test_export_parity_check_skips_a_model_declaring_huge_inputs():
    from bnnconvert.validate import quick_check

    result = quick_check(None, relu_model((1, 30000, 30000)), None)
    assert result.unchecked == [f"parity not checked: {HUGE_INPUT}"]


@pytest.mark.parametrize("content", [b"", b"hello\n"], ids=["empty", "six-bytes"])
def test_file_too_short_for_a_flatbuffer_says_so(tmp_path, content):
    short = tmp_path / "short.tflite"
    short.write_bytes(content)
    with pytest.raises(FlatbufferProblem) as info:
        ir.load_bytes(short)
    assert str(info.value) == (
        f"{short}: not a TFLite flatbuffer: the file is {len(content)} bytes long, too short "
        "for one; give a .tflite model file"
    )
