"""What adb and ssh devices share: a remote shell, a private work directory on it.

Every remote command is an argv list turned into one command line by
:func:`~bnnconvert.devices.base.shell_command` (each element
``shlex.quote``-d), then handed to the transport (``adb shell`` or ``ssh``)
as a single argument. The work directory is made with ``mktemp -d`` and
checked against its expected shape before anything is removed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from bnnconvert.devices.base import (
    CommandOutput,
    DeviceLost,
    LineCallback,
    run_with_timeout,
    shell_command,
    stream,
)
from bnnconvert.errors import DeviceProblem

_PROBE_TIMEOUT = 60.0


class RemoteShellDevice:
    """Base for devices reached through a remote POSIX shell."""

    name: str
    temp_root = "/tmp"

    def __init__(self) -> None:
        self._workdir: str | None = None

    # -- the transport: implemented by adb and ssh --------------------------------
    def transport(self, command: str) -> list[str]:
        """The local argv that runs the shell command line ``command`` on the device."""
        raise NotImplementedError

    def transport_failed(self, out: CommandOutput) -> bool:
        """Whether ``out`` shows the transport (not the remote command) failing."""
        raise NotImplementedError

    def transport_cause(self, out: CommandOutput) -> str:
        """Why the transport failed, in words, with what to do (``out`` failed)."""
        raise NotImplementedError

    # -- shared behaviour ---------------------------------------------------------
    def remote_argv(self, argv: Sequence[str]) -> list[str]:
        """The local argv that runs ``argv`` on the device, every element quoted."""
        return self.transport(shell_command(argv))

    def connect(self) -> None:
        """Check that the device answers, before any real work.

        Raises:
            DeviceProblem: it does not; the message names the cause first
                (connection refused, unknown host, no device attached, ...).
        """
        out = run_with_timeout(self.remote_argv(["true"]), _PROBE_TIMEOUT)
        if out.returncode != 0:
            cause = self.transport_cause(out) if self.transport_failed(out) else out.last_line()
            raise DeviceProblem(f"{self.name}: {cause}")

    def _check(self, out: CommandOutput, what: str) -> CommandOutput:
        if self.transport_failed(out):
            raise DeviceLost(
                f"{self.name} stopped answering while {what}: {self.transport_cause(out)}"
            )
        return out

    def run(self, argv: Sequence[str], *, on_line: LineCallback | None = None) -> CommandOutput:
        out = stream(self.remote_argv(argv), on_line=on_line)
        return self._check(out, f"running {Path(str(argv[0])).name}")

    def probe(self, argv: Sequence[str]) -> CommandOutput:
        """A short command that must finish soon (info, mkdir, which, rm)."""
        out = run_with_timeout(self.remote_argv(argv), _PROBE_TIMEOUT)
        return self._check(out, f"running {argv[0]}")

    def workdir(self) -> str:
        if self._workdir is None:
            out = self.probe(["mktemp", "-d", f"{self.temp_root}/bnnconvert.XXXXXX"])
            path = out.output.strip().splitlines()[-1].strip() if out.output.strip() else ""
            if out.returncode != 0 or not self._is_own_workdir(path):
                raise DeviceProblem(
                    f"{self.name}: could not create a work directory under {self.temp_root} "
                    f"({out.last_line()}); check the device has free space and mktemp"
                )
            self._workdir = path
        return self._workdir

    def _is_own_workdir(self, path: str) -> bool:
        pattern = re.escape(self.temp_root) + r"/bnnconvert\.[A-Za-z0-9]{6,}"
        return re.fullmatch(pattern, path) is not None

    def remote_path(self, name: str) -> str:
        return f"{self.workdir()}/{Path(name).name}"

    def find_program(self, name: str) -> str | None:
        out = self.probe(["sh", "-c", 'command -v -- "$1" || true', "sh", name])
        found = out.output.strip().splitlines()
        return found[-1].strip() if found and found[-1].startswith("/") else None

    def has_python_lce(self, python: str) -> bool:
        """Whether ``python`` on the device can import LCE's interpreter package."""
        check = (
            "import importlib.util, sys; "
            "sys.exit(importlib.util.find_spec('larq_compute_engine') is None)"
        )
        return self.probe([python, "-c", check]).returncode == 0

    def cleanup(self) -> None:
        if self._workdir is not None and self._is_own_workdir(self._workdir):
            self.probe(["rm", "-rf", "--", self._workdir])
        self._workdir = None
