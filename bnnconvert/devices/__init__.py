"""Benchmark devices: this machine, Android phones over adb, Linux boards over ssh."""

from __future__ import annotations

from pathlib import Path

from bnnconvert.devices.adb import AdbDevice
from bnnconvert.devices.base import CommandOutput, Device, DeviceInfo, DeviceLost, shell_command
from bnnconvert.devices.local import LocalDevice
from bnnconvert.devices.ssh import SshDevice
from bnnconvert.errors import UsageProblem

__all__ = [
    "AdbDevice",
    "CommandOutput",
    "Device",
    "DeviceInfo",
    "DeviceLost",
    "LocalDevice",
    "SshDevice",
    "open_device",
    "shell_command",
]


def open_device(
    spec: str,
    *,
    adb: str = "adb",
    ssh: str = "ssh",
    identity_file: Path | None = None,
    known_hosts: Path | None = None,
) -> LocalDevice | AdbDevice | SshDevice:
    """The device named by ``spec``: ``local``, ``adb[:SERIAL]`` or ``ssh://user@host[:port]``.

    Raises:
        UsageProblem: ``spec`` names none of these.
    """
    if spec == "local":
        return LocalDevice()
    if spec == "adb" or spec.startswith("adb:"):
        return AdbDevice(spec, adb=adb)
    if spec.startswith("ssh://"):
        return SshDevice(spec, ssh=ssh, identity_file=identity_file, known_hosts=known_hosts)
    raise UsageProblem(
        f"Expected device= local, adb, adb:SERIAL or ssh://user@host[:port], got {spec!r}"
    )
