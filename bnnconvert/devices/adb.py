"""Android phones over adb: ``adb`` or ``adb:SERIAL``.

``adb push``/``pull`` take their paths as plain arguments (the sync protocol
involves no shell); ``adb shell`` joins its arguments into a command line for
the device's shell, so it always gets one argument built by
:func:`~bnnconvert.devices.base.shell_command`.
"""

from __future__ import annotations

import re
from pathlib import Path

from bnnconvert.devices.base import (
    CommandOutput,
    DeviceInfo,
    parse_cpuinfo,
    run_with_timeout,
)
from bnnconvert.devices.remote import RemoteShellDevice
from bnnconvert.errors import DeviceProblem, UsageProblem

_SERIAL = re.compile(r"[A-Za-z0-9._:\-]+")
_GETPROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
# What adb itself prints when the device is gone, as opposed to a failing command.
_TRANSPORT_ERRORS = re.compile(
    r"^(error: (device .*not found|no devices|more than one device|closed|device offline"
    r"|device unauthorized)"
    r"|adb: (device|error: failed to get feature set))",
    re.MULTILINE,
)
_PROBE_TIMEOUT = 60.0
# adb's own messages for a device it cannot reach -> what to do about it.
_ADB_HINTS = [
    ("no devices", "connect a phone with USB debugging on, then check `adb devices`"),
    ("more than one device", "pass device= adb:SERIAL (serials as `adb devices` lists them)"),
    ("not found", "check the serial against `adb devices`"),
    ("unauthorized", "unlock the phone and accept its 'Allow USB debugging' prompt"),
    ("offline", "reconnect the phone, or restart adb with `adb kill-server`"),
]


def adb_failure_cause(output: str) -> str:
    """adb's first error line, without its ``error:`` prefix, and what to do about it."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    first = next((line for line in lines if line.startswith(("error:", "adb:"))), None)
    if first is None:
        return lines[-1] if lines else "adb failed without a message"
    cause = first.removeprefix("error:").removeprefix("adb:").strip().rstrip(".")
    hint = next((h for marker, h in _ADB_HINTS if marker in cause), None)
    return f"{cause}; {hint}" if hint else cause


def parse_adb_spec(spec: str) -> str | None:
    """``adb`` -> None (the only device), ``adb:SERIAL`` -> SERIAL.

    Raises:
        UsageProblem: anything else.
    """
    if spec == "adb":
        return None
    serial = spec.removeprefix("adb:")
    if not spec.startswith("adb:") or not _SERIAL.fullmatch(serial):
        raise UsageProblem(
            "Expected device= adb or adb:SERIAL (serials as `adb devices` lists them), "
            f"got {spec!r}"
        )
    return serial


def parse_getprop(text: str) -> dict[str, str]:
    """``adb shell getprop`` output -> {property: value}."""
    props = {}
    for line in text.splitlines():
        if m := _GETPROP.match(line.strip()):
            props[m[1]] = m[2]
    return props


def android_info(name: str, getprop: str, cpuinfo: str) -> DeviceInfo:
    """A :class:`DeviceInfo` from ``getprop`` and ``/proc/cpuinfo`` output."""
    props = parse_getprop(getprop)
    cpu = parse_cpuinfo(cpuinfo)
    maker = props.get("ro.product.manufacturer", "")
    model = props.get("ro.product.model")
    soc_model = props.get("ro.soc.model")
    soc = (
        f"{props.get('ro.soc.manufacturer', '')} {soc_model}".strip()
        if soc_model
        else cpu.hardware or props.get("ro.board.platform")
    )
    release = props.get("ro.build.version.release")
    sdk = props.get("ro.build.version.sdk")
    return DeviceInfo(
        name=name,
        kind="adb",
        model=f"{maker} {model}".strip() if model else None,
        soc=soc,
        cpu=cpu.cpu,
        cores=cpu.cores or None,
        abi=props.get("ro.product.cpu.abi"),
        os=f"Android {release} (API {sdk})" if release else None,
        extra={
            k: props[k]
            for k in ("ro.board.platform", "ro.hardware", "ro.build.fingerprint")
            if k in props
        },
    )


class AdbDevice(RemoteShellDevice):
    """An Android device; ``adb`` is the executable used (a path or a name on PATH)."""

    temp_root = "/data/local/tmp"

    def __init__(self, spec: str = "adb", *, adb: str = "adb") -> None:
        super().__init__()
        self.serial = parse_adb_spec(spec)
        self.name = f"adb:{self.serial}" if self.serial else "adb"
        self.adb = adb

    def adb_argv(self, *args: str) -> list[str]:
        """``adb [-s SERIAL] ARGS...`` as an argv list."""
        return [self.adb, *(["-s", self.serial] if self.serial else []), *args]

    def transport(self, command: str) -> list[str]:
        return self.adb_argv("shell", command)

    def transport_failed(self, out: CommandOutput) -> bool:
        return out.returncode != 0 and _TRANSPORT_ERRORS.search(out.output) is not None

    def transport_cause(self, out: CommandOutput) -> str:
        return adb_failure_cause(out.output)

    def info(self) -> DeviceInfo:
        props = self.probe(["getprop"]).output
        cpuinfo = self.probe(["cat", "/proc/cpuinfo"]).output
        return android_info(self.name, props, cpuinfo)

    def push(self, local: Path, name: str) -> str:
        remote = self.remote_path(name)
        out = self._check(
            run_with_timeout(self.adb_argv("push", str(local), remote), 600),
            f"pushing {Path(local).name}",
        )
        if out.returncode != 0:
            raise DeviceProblem(f"{self.name}: adb push to {remote} failed: {out.last_line()}")
        if local.stat().st_mode & 0o111:
            self.probe(["chmod", "755", remote])
        return remote

    def pull(self, remote: str, local: Path) -> None:
        out = self._check(
            run_with_timeout(self.adb_argv("pull", remote, str(local)), 600), f"pulling {remote}"
        )
        if out.returncode != 0:
            raise DeviceProblem(f"{self.name}: adb pull {remote} failed: {out.last_line()}")

    def find_program(self, name: str) -> str | None:
        found = super().find_program(name)
        if found:
            return found
        usual = f"{self.temp_root}/{Path(name).name}"
        out = self.probe(["ls", usual])
        return usual if out.returncode == 0 and usual in out.output else None
