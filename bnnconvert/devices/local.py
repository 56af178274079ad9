"""This machine as a benchmark device: a temporary work directory, plain subprocesses."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from bnnconvert.devices.base import (
    LINUX_INFO_SCRIPT,
    CommandOutput,
    DeviceInfo,
    LineCallback,
    linux_info,
    run_with_timeout,
    stream,
)


class LocalDevice:
    """Runs argv lists directly (never through a shell) in a private temp directory.

    The Python runner runs in a subprocess with this interpreter
    (``sys.executable``), so a crash inside LCE cannot take bnnconvert down.
    """

    name = "local"

    def __init__(self) -> None:
        self._workdir: Path | None = None

    @property
    def python(self) -> str:
        return sys.executable

    def workdir(self) -> Path:
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="bnnconvert-bench-"))
        return self._workdir

    def connect(self) -> None:
        """This machine is always there."""

    def info(self) -> DeviceInfo:
        if platform.system() == "Linux":
            out = run_with_timeout(["sh", "-c", LINUX_INFO_SCRIPT], timeout=10)
            info = linux_info(self.name, "local", out.output)
        else:
            info = DeviceInfo(name=self.name, kind="local", os=platform.platform())
        info.abi = info.abi or platform.machine()
        return info

    def push(self, local: Path, name: str) -> str:
        target = self.workdir() / Path(name).name
        shutil.copyfile(local, target)
        if os.access(local, os.X_OK):
            target.chmod(0o755)
        return str(target)

    def run(self, argv: Sequence[str], *, on_line: LineCallback | None = None) -> CommandOutput:
        return stream(argv, on_line=on_line)

    def pull(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def find_program(self, name: str) -> str | None:
        return shutil.which(name)

    def cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
