"""Command-line behaviour that every command shares."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
from helpers import BUNDLED, REPO


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )


def test_help_does_not_import_tensorflow() -> None:
    result = _python(
        "import sys\n"
        "from bnnconvert.cli.main import run\n"
        "code = run(['--help'])\n"
        "assert code == 0, code\n"
        "heavy = [m for m in ('tensorflow', 'larq', 'tf_keras') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout
    assert "export" in result.stdout


def test_keras3_already_imported_is_a_clear_error() -> None:
    result = _python(
        "import os\n"
        "os.environ.pop('TF_USE_LEGACY_KERAS', None)\n"
        "import tensorflow as tf\n"
        "tf.keras.layers.Layer\n"
        "from bnnconvert import _tf\n"
        "from bnnconvert.errors import EnvironmentProblem\n"
        "try:\n"
        "    _tf.keras()\n"
        "except EnvironmentProblem as e:\n"
        "    print('ERR', e)\n"
    )
    assert "ERR TensorFlow was imported with Keras 3 before bnnconvert" in result.stdout


def _export_cli(*flags: str, out) -> subprocess.CompletedProcess[str]:
    """``bnnconvert [flags] export BUNDLED -o out`` in a subprocess without TF_* variables."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_")}
    return subprocess.run(
        [sys.executable, "-m", "bnnconvert", *flags, "export", str(BUNDLED), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def test_export_is_quiet(tmp_path) -> None:
    quiet = _export_cli(out=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    assert f"model:  {tmp_path}/model.tflite" in quiet.stdout


@pytest.mark.slow  # a second full export; the quiet one above is the everyday check
def test_verbose_lets_tensorflow_speak(tmp_path) -> None:
    loud = _export_cli("--verbose", out=tmp_path)
    assert loud.returncode == 0 and loud.stderr != ""


def test_version(cli) -> None:
    from bnnconvert import __version__

    assert cli("--version") == (0, f"bnnconvert {__version__}\n", "")


def test_global_flags_work_after_the_command_and_debug_keeps_the_exit_code(cli, tmp_path) -> None:
    missing = tmp_path / "missing.tflite"
    plain = cli("inspect", str(missing))
    assert plain == (2, "", f"error: {missing}: no such file; give the path of a .tflite model\n")
    for args in (["--debug", "inspect", str(missing)], ["inspect", str(missing), "--debug"]):
        code, _, err = cli(*args)
        assert code == 2, args
        assert err.startswith("Traceback") and err.endswith(plain[2])
    assert cli("inspect", str(missing), "--verbose") == plain
    assert cli("inspect", str(missing), "-v") == plain


def test_hoisting_leaves_everything_after_a_double_dash_alone() -> None:
    from bnnconvert.cli.main import hoist_global_flags

    assert hoist_global_flags(["inspect", "m.tflite", "-v", "--debug"]) == [
        "-v",
        "--debug",
        "inspect",
        "m.tflite",
    ]
    assert hoist_global_flags(["inspect", "--", "--debug"]) == ["inspect", "--", "--debug"]


def test_help_reads_cleanly(cli) -> None:
    texts = {}
    for command in ("", "export", "inspect", "validate", "bench"):
        code, texts[command], _ = cli(*([command] if command else []), "--help")
        assert code == 0, command
        assert "<bool>" not in texts[command], command
        assert not re.search(r"\w \.(\s|$)", texts[command]), command  # no "runs ."
        assert "{" not in texts[command], command
    assert "Usage: bnnconvert bench [OPTIONS] MODEL..." in texts["bench"]
    assert "[default: until every" in texts["bench"]
    assert "Usage: bnnconvert validate [OPTIONS] CKPT MODEL" in texts["validate"]
    assert "--version" in texts[""]
    for command in ("validate", "bench"):
        assert "--kernel" in texts[command] and "KERNEL" in texts[command]


def test_ctrl_c_during_export_says_so_and_exits_130(tmp_path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "bnnconvert", "export", str(BUNDLED), "-o", str(tmp_path / "o")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    time.sleep(3)  # inside TensorFlow's import or the conversion
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert err.decode().strip().splitlines()[-1] == (
        "error: interrupted; no partial output was left behind"
    )
    assert not (tmp_path / "o" / "model.tflite").exists()
