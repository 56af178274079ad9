"""Device pieces: spec parsing, command construction and quoting, device info parsing."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

import pytest

from bnnconvert.bench import InterpreterConfig, host_autotune_configs, thread_sweep
from bnnconvert.bench.measure import benchmark_argv
from bnnconvert.devices import AdbDevice, LocalDevice, SshDevice, open_device, shell_command
from bnnconvert.devices.adb import android_info, parse_adb_spec
from bnnconvert.devices.base import CommandOutput, linux_info, parse_cpuinfo
from bnnconvert.devices.ssh import parse_ssh_spec
from bnnconvert.errors import DeviceProblem, UsageProblem

DATA = Path(__file__).parent / "data" / "bench"
NASTY = "/data/local/tmp/bnnconvert.Ab12Cd/a;rm -rf ~.tflite"


def run_in_shell(command: str) -> list[str]:
    """What a POSIX shell (as adbd and sshd use) makes of ``command``, with argv[0] printing."""
    out = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return out.stdout.split("\0")[:-1]


def test_shell_command_round_trips_through_a_real_shell():
    argv = [NASTY, "$(touch x)", "`id`", "it's", 'a "b"', "-rf", "~", "*", "", "a\nb"]
    command = shell_command(["printf", "%s\\0", *argv])
    assert run_in_shell(command) == argv


def test_adb_shell_argv_is_one_quoted_argument():
    dev = AdbDevice("adb:emulator-5554", adb="/opt/android/platform-tools/adb")
    argv = benchmark_argv(
        "/data/local/tmp/bnnconvert.Ab12Cd/lce_benchmark_model",
        NASTY,
        InterpreterConfig(4, False, None),
        runs=10,
        warmup=1,
        op_profiling=True,
    )
    local = dev.remote_argv(argv)
    assert local[:4] == ["/opt/android/platform-tools/adb", "-s", "emulator-5554", "shell"]
    assert len(local) == 5
    assert local[4] == (
        "/data/local/tmp/bnnconvert.Ab12Cd/lce_benchmark_model "
        "'--graph=/data/local/tmp/bnnconvert.Ab12Cd/a;rm -rf ~.tflite' "
        "--num_threads=4 --num_runs=10 --warmup_runs=1 --enable_op_profiling=true"
    )
    assert shlex.split(local[4]) == argv
    assert dev.adb_argv("push", "/tmp/x y.tflite", NASTY) == [
        "/opt/android/platform-tools/adb",
        "-s",
        "emulator-5554",
        "push",
        "/tmp/x y.tflite",
        NASTY,
    ]
    assert AdbDevice("adb").adb_argv("shell", "getprop") == ["adb", "shell", "getprop"]


def test_benchmark_argv_xnnpack_flag_only_when_chosen():
    base = benchmark_argv(
        "lbm", "m.tflite", InterpreterConfig(1, False, None), runs=5, warmup=2, op_profiling=False
    )
    assert base == ["lbm", "--graph=m.tflite", "--num_threads=1", "--num_runs=5", "--warmup_runs=2"]
    off = benchmark_argv(
        "lbm", "m.tflite", InterpreterConfig(2, False, False), runs=5, warmup=2, op_profiling=False
    )
    assert off[-1] == "--use_xnnpack=false"


def test_ssh_argv_uses_batch_mode_and_quotes():
    dev = SshDevice(
        "ssh://pi@192.168.1.20:2222", identity_file=Path("/k/id"), known_hosts=Path("/k/kh")
    )
    local = dev.remote_argv(["python3", "/tmp/bnnconvert.x1y2z3/run.py", "--spec", '{"a": "b c"}'])
    assert local[0] == "ssh" and local[-2:-1] == ["pi@192.168.1.20"] and local[-3] == "--"
    joined = " ".join(local[:-1])
    for option in (
        "BatchMode=yes",
        "-p 2222",
        "-i /k/id",
        "UserKnownHostsFile=/k/kh",
        "StrictHostKeyChecking=yes",
    ):
        assert option in joined
    assert local[-1] == 'python3 /tmp/bnnconvert.x1y2z3/run.py --spec \'{"a": "b c"}\''


@pytest.mark.parametrize(
    ("spec", "user", "host", "port"),
    [
        ("ssh://pi@raspberrypi.local", "pi", "raspberrypi.local", 22),
        ("ssh://root@127.0.0.1:2222", "root", "127.0.0.1", 2222),
        ("ssh://board", None, "board", 22),
        ("ssh://u@[fe80::1]:22", "u", "[fe80::1]", 22),
    ],
)
def test_ssh_specs(spec, user, host, port):
    t = parse_ssh_spec(spec)
    assert (t.user, t.host, t.port) == (user, host, port)


@pytest.mark.parametrize(
    "spec", ["ssh://-oProxyCommand=x@h", "ssh://u@h;id", "ssh://u@h:99999", "ssh://", "ssh://u@-h"]
)
def test_bad_ssh_specs_are_usage_problems(spec):
    with pytest.raises(UsageProblem, match=r"Expected device= ssh://user@host\[:port\]"):
        parse_ssh_spec(spec)


def test_device_specs():
    assert (
        parse_adb_spec("adb") is None and parse_adb_spec("adb:0A161JEC205981") == "0A161JEC205981"
    )
    assert parse_adb_spec("adb:192.168.1.5:5555") == "192.168.1.5:5555"
    with pytest.raises(UsageProblem, match="adb:SERIAL"):
        parse_adb_spec("adb:x;reboot")
    assert isinstance(open_device("local"), LocalDevice)
    assert isinstance(open_device("adb:abc"), AdbDevice)
    with pytest.raises(UsageProblem, match=r"Expected device= local, adb, adb:SERIAL or ssh://"):
        open_device("usb")


def test_android_info_from_recorded_getprop_and_cpuinfo():
    info = android_info(
        "adb:0A161JEC205981",
        (DATA / "adb_getprop_pixel4a.txt").read_text(),
        (DATA / "adb_proc_cpuinfo_pixel4a.txt").read_text(),
    )
    assert info.model == "Google Pixel 4a" and info.soc == "Qualcomm SM7150"
    assert info.cores == 8 and info.abi == "arm64-v8a" and info.os == "Android 13 (API 33)"
    assert info.cpu == "6× Kryo 4xx Silver + 2× Kryo 4xx Gold"
    assert info.extra["ro.board.platform"] == "sm6150"


def test_linux_board_info_from_recorded_cpuinfo():
    cpuinfo = (DATA / "ssh_proc_cpuinfo_rpi4.txt").read_text()
    parsed = parse_cpuinfo(cpuinfo)
    assert (parsed.cores, parsed.cpu, parsed.hardware) == (4, "4× Cortex-A72", "BCM2835")
    text = (
        "@@uname\nLinux 6.1.21-v8+ aarch64\n@@nproc\n4\n@@model\n"
        "Raspberry Pi 4 Model B Rev 1.4\x00\n\n@@os\nDebian GNU/Linux 11 (bullseye)\n@@cpuinfo\n"
        + cpuinfo
    )
    info = linux_info("ssh://pi@rpi:22", "ssh", text)
    assert info.model == "Raspberry Pi 4 Model B Rev 1.4" and info.abi == "aarch64"
    assert info.cores == 4 and info.os == "Debian GNU/Linux 11 (bullseye)"


def test_local_device_info_describes_this_machine():
    info = LocalDevice().info()
    assert info.cores == os.cpu_count() and info.abi == os.uname().machine and info.cpu


@pytest.mark.parametrize(
    ("output", "lost"),
    [
        ("error: device 'emulator-5554' not found\n", True),
        ("error: no devices/emulators found\n", True),
        ("error: closed\n", True),
        ("/system/bin/sh: lce_benchmark_model: inaccessible or not found\n", False),
    ],
    ids=["serial-not-found", "no-devices", "closed", "program-missing-on-device"],
)
def test_adb_tells_a_lost_device_from_a_failing_command(output, lost):
    dev = AdbDevice("adb:emulator-5554")
    assert dev.transport_failed(CommandOutput(["adb"], 1, output)) is lost


def test_thread_sweeps_and_autotune_configs():
    assert thread_sweep(1) == [1] and thread_sweep(4) == [1, 2, 3, 4]
    assert thread_sweep(8) == [1, 2, 4, 8] and thread_sweep(6) == [1, 2, 4, 6]
    assert thread_sweep(64) == [1, 2, 4, 8]
    configs = host_autotune_configs(2)
    assert len(configs) == len(set(configs)) == 8
    assert configs[0] == InterpreterConfig(1, False, False)


def _stand_in_adb(tmp_path: Path, message: str) -> Path:
    """An executable that answers every call as adb does without a phone (recorded text)."""
    adb = tmp_path / "adb"
    adb.write_text(f"#!/bin/sh\nprintf '%s\\n' {shlex.quote(message)} >&2\nexit 1\n")
    adb.chmod(0o755)
    return adb


def test_adb_not_installed_is_one_line(tmp_path):
    missing = tmp_path / "no" / "adb"
    dev = AdbDevice("adb", adb=str(missing))
    with pytest.raises(DeviceProblem) as caught:
        dev.connect()
    assert str(caught.value) == (
        f"{missing} is not installed or not on PATH; install Android platform-tools "
        "(Debian: adb) or pass --adb PATH"
    )


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        pytest.param(
            "error: no devices/emulators found",
            "adb: no devices/emulators found; connect a phone with USB debugging on, then "
            "check `adb devices`",
            id="no-phone",
        ),
        pytest.param(
            "error: more than one device/emulator",
            "adb: more than one device/emulator; pass device= adb:SERIAL (serials as "
            "`adb devices` lists them)",
            id="two-phones",
        ),
        pytest.param(
            "error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set",
            "adb: device unauthorized; unlock the phone and accept its 'Allow USB debugging' "
            "prompt",
            id="unauthorized",
        ),
    ],
)
def test_adb_without_a_usable_phone_names_the_cause_first(tmp_path, message, expected):
    dev = AdbDevice("adb", adb=str(_stand_in_adb(tmp_path, message)))
    with pytest.raises(DeviceProblem) as caught:
        dev.connect()
    assert str(caught.value) == expected
