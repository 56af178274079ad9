"""What every benchmark device offers, and the pieces the implementations share.

A device runs commands given as argv lists. Local commands never go through
a shell. Remote ones (``adb shell``, ``ssh``) must, so they are built from
an argv list by quoting every element with :func:`shlex.quote`
(:func:`shell_command`) and nothing else; no caller ever writes a shell
string by hand around user data.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bnnconvert.errors import DeviceProblem

LineCallback = Callable[[str], None]


class DeviceLost(DeviceProblem):
    """The device stopped answering (connection dropped, unplugged, sshd gone)."""


def missing_program(program: str) -> DeviceProblem:
    """The one-line error for a local executable (adb, ssh) that is not installed."""
    hints = {
        "adb": "install Android platform-tools (Debian: adb) or pass --adb PATH",
        "ssh": "install the OpenSSH client (Debian: openssh-client)",
    }
    hint = hints.get(Path(program).name, "install it or give its full path")
    return DeviceProblem(f"{program} is not installed or not on PATH; {hint}")


@dataclass
class DeviceInfo:
    """What the report says about the machine that ran the model."""

    name: str
    kind: str
    model: str | None = None
    soc: str | None = None
    cpu: str | None = None
    cores: int | None = None
    abi: str | None = None
    os: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CommandOutput:
    """A finished command: its argv as run locally, exit code and merged output."""

    argv: list[str]
    returncode: int
    output: str

    def last_line(self) -> str:
        lines = [line for line in self.output.splitlines() if line.strip()]
        return lines[-1].strip() if lines else "<no output>"


class Device(Protocol):
    """A place to run a benchmark: push files, run argv, pull files, describe itself."""

    name: str

    def connect(self) -> None:
        """Check that the device answers; raise :class:`DeviceProblem` naming the cause."""
        ...

    def info(self) -> DeviceInfo:
        """Model, SoC, cores, ABI and OS of the device."""
        ...

    def push(self, local: Path, name: str) -> str:
        """Copy ``local`` into the device's work directory as ``name``; return its path there."""
        ...

    def run(self, argv: Sequence[str], *, on_line: LineCallback | None = None) -> CommandOutput:
        """Run ``argv`` on the device, calling ``on_line`` for each output line as it arrives.

        Raises:
            DeviceLost: the connection to the device failed or dropped.
        """
        ...

    def pull(self, remote: str, local: Path) -> None:
        """Copy ``remote`` from the device to ``local``."""
        ...

    def find_program(self, name: str) -> str | None:
        """The path of ``name`` on the device's PATH (or its usual places), or None."""
        ...

    def cleanup(self) -> None:
        """Remove everything this object pushed or created on the device."""
        ...


def shell_command(argv: Sequence[str]) -> str:
    """One shell command line that runs exactly ``argv`` (every element quoted)."""
    return " ".join(shlex.quote(str(arg)) for arg in argv)


def stream(
    argv: Sequence[str],
    *,
    on_line: LineCallback | None = None,
    stdin_path: Path | None = None,
    stdout_path: Path | None = None,
) -> CommandOutput:
    """Run a local argv (no shell), merging stderr into stdout, streaming lines.

    With ``stdout_path`` the standard output goes to that file unread and only
    standard error is collected.
    """
    stdin = open(stdin_path, "rb") if stdin_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        return _stream(argv, on_line, stdin, stdout_path)
    except FileNotFoundError as e:
        if e.filename != argv[0]:
            raise
        raise missing_program(argv[0]) from e
    finally:
        if stdin_path:
            stdin.close()


def _stream(
    argv: Sequence[str],
    on_line: LineCallback | None,
    stdin: Any,
    stdout_path: Path | None,
) -> CommandOutput:
    """:func:`stream`'s body; kills the command if reading is interrupted (Ctrl-C)."""
    if stdout_path is not None:
        with open(stdout_path, "wb") as out:
            done = subprocess.run(list(argv), stdin=stdin, stdout=out, stderr=subprocess.PIPE)
        return CommandOutput(list(argv), done.returncode, done.stderr.decode(errors="replace"))
    proc = subprocess.Popen(
        list(argv),
        stdin=stdin,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        bufsize=1,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if on_line is not None:
                on_line(line.rstrip("\n"))
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return CommandOutput(list(argv), proc.wait(), "".join(lines))


def run_with_timeout(argv: Sequence[str], timeout: float) -> CommandOutput:
    """A short local command (probe, mkdir, rm) that must finish within ``timeout`` s.

    Raises:
        DeviceLost: it did not (the command is killed).
    """
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=timeout,
        )
    except FileNotFoundError as e:
        if e.filename != argv[0]:
            raise
        raise missing_program(argv[0]) from e
    except subprocess.TimeoutExpired as e:
        raise DeviceLost(
            f"{argv[0]} did not answer within {timeout:.0f} s; is the device reachable?"
        ) from e
    return CommandOutput(list(argv), done.returncode, done.stdout)


# Part numbers from /proc/cpuinfo ("CPU implementer", "CPU part") -> core names.
_CPU_PARTS = {
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd04"): "Cortex-A35",
    ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0d"): "Cortex-A77",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd44"): "Cortex-X1",
    ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710",
    ("0x41", "0xd48"): "Cortex-X2",
    ("0x51", "0x800"): "Kryo 2xx Gold",
    ("0x51", "0x801"): "Kryo 2xx Silver",
    ("0x51", "0x802"): "Kryo 3xx Gold",
    ("0x51", "0x803"): "Kryo 3xx Silver",
    ("0x51", "0x804"): "Kryo 4xx Gold",
    ("0x51", "0x805"): "Kryo 4xx Silver",
}


@dataclass
class CpuInfo:
    cores: int
    cpu: str | None
    hardware: str | None
    board_model: str | None


def parse_cpuinfo(text: str) -> CpuInfo:
    """Summarise ``/proc/cpuinfo`` (arm64 or x86) as core count and a CPU description."""
    blocks: list[dict[str, str]] = [{}]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append({})
            continue
        key, sep, value = line.partition(":")
        if sep:
            blocks[-1][key.strip().lower()] = value.strip()
    blocks = [b for b in blocks if b]
    cpus = [b for b in blocks if "processor" in b]
    trailer: dict[str, str] = {}
    for b in blocks:
        if "processor" not in b:
            trailer.update(b)
    names: list[str] = []
    for b in cpus:
        if "model name" in b:
            names.append(b["model name"])
        elif "cpu part" in b:
            key = (b.get("cpu implementer", "").lower(), b["cpu part"].lower())
            names.append(_CPU_PARTS.get(key, f"{key[0]}/{key[1]}"))
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    cpu = " + ".join(f"{c}× {n}" for n, c in counts.items()) or None
    hardware = trailer.get("hardware") or (cpus[0].get("hardware") if cpus else None)
    return CpuInfo(len(cpus), cpu, hardware, trailer.get("model"))


# A fixed script (no user data in it) that describes a Linux machine in one call.
LINUX_INFO_SCRIPT = (
    "echo @@uname; uname -srm; "
    "echo @@nproc; nproc 2>/dev/null || getconf _NPROCESSORS_ONLN; "
    "echo @@model; cat /proc/device-tree/model 2>/dev/null; echo; "
    'echo @@os; (. /etc/os-release 2>/dev/null && echo "$PRETTY_NAME"); '
    "echo @@cpuinfo; cat /proc/cpuinfo 2>/dev/null"
)


def split_sections(text: str) -> dict[str, str]:
    """Split the output of :data:`LINUX_INFO_SCRIPT` at its ``@@name`` markers."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if re.fullmatch(r"@@\w+", line.strip()):
            current = line.strip()[2:]
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return {k: "\n".join(v).strip().strip("\x00") for k, v in sections.items()}


def linux_info(name: str, kind: str, text: str) -> DeviceInfo:
    """A :class:`DeviceInfo` from the output of :data:`LINUX_INFO_SCRIPT`."""
    s = split_sections(text)
    cpu = parse_cpuinfo(s.get("cpuinfo", ""))
    uname = s.get("uname", "").split()
    nproc = s.get("nproc", "").split()
    return DeviceInfo(
        name=name,
        kind=kind,
        model=s.get("model") or cpu.board_model or None,
        soc=cpu.hardware,
        cpu=cpu.cpu,
        cores=int(nproc[0]) if nproc and nproc[0].isdigit() else cpu.cores or None,
        abi=uname[-1] if uname else None,
        os=s.get("os") or (" ".join(uname[:2]) if uname else None),
        extra={"uname": s.get("uname", "")},
    )
