"""Linux boards over OpenSSH: ``ssh://user@host[:port]``.

Uses the system ``ssh`` client in batch mode (keys only, no prompts). Files
move as ``ssh HOST 'cat > PATH'`` with the file on standard input, not scp:
scp reads remote paths through the remote shell in its legacy mode and not
in its SFTP mode, and minimal boards often lack an SFTP server; ``cat`` keeps
all quoting in one place (:func:`~bnnconvert.devices.base.shell_command`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from bnnconvert.devices.base import (
    LINUX_INFO_SCRIPT,
    CommandOutput,
    DeviceInfo,
    linux_info,
    stream,
)
from bnnconvert.devices.remote import RemoteShellDevice
from bnnconvert.errors import DeviceProblem, UsageProblem

_SPEC = re.compile(
    r"ssh://(?:(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@)?"
    r"(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|\[[0-9A-Fa-f:.]+\])(?::(?P<port>\d{1,5}))?/?"
)


@dataclass(frozen=True)
class SshTarget:
    user: str | None
    host: str
    port: int

    @property
    def destination(self) -> str:
        host = self.host.strip("[]")
        return f"{self.user}@{host}" if self.user else host

    def __str__(self) -> str:
        user = f"{self.user}@" if self.user else ""
        return f"ssh://{user}{self.host}:{self.port}"


def parse_ssh_spec(spec: str) -> SshTarget:
    """``ssh://user@host[:port]`` -> :class:`SshTarget`.

    Raises:
        UsageProblem: the spec is not of that form.
    """
    m = _SPEC.fullmatch(spec)
    if not m or not 0 < int(m["port"] or 22) < 65536:
        raise UsageProblem(
            f"Expected device= ssh://user@host[:port] (e.g. ssh://pi@192.168.1.20:22), got {spec!r}"
        )
    return SshTarget(m["user"], m["host"], int(m["port"] or 22))


# OpenSSH's own messages for a connection that failed -> (cause, what to do).
_SSH_FAILURES = [
    ("Connection refused", "connection refused: nothing listens on {where}; is sshd running "
     "there?"),
    ("Could not resolve hostname", "unknown host {host}: the name does not resolve; check it or "
     "use the board's IP address"),
    ("Permission denied", "authentication failed: the board refused every key offered; pass "
     "--identity KEY with a key in its authorized_keys (no password prompts in batch mode)"),
    ("Host key verification failed", "host key verification failed: {host}'s key is not in "
     "known_hosts (or has changed); connect once with ssh to check it, or pass --known-hosts"),
    ("timed out", "connection timed out: {where} did not answer; is the board on the network?"),
    ("No route to host", "no route to host {host}; is the board on the network?"),
    ("Network is unreachable", "network unreachable for {host}; check this machine's network"),
    ("Connection closed", "the connection was closed by {where}"),
    ("Connection reset", "the connection was reset by {where}"),
    ("Broken pipe", "the connection to {where} broke"),
]  # fmt: skip


def ssh_failure_cause(output: str, target: SshTarget) -> str:
    """The cause of a failed ssh connection in words, from OpenSSH's messages."""
    for marker, cause in _SSH_FAILURES:
        if marker in output:
            return cause.format(host=target.host, where=f"{target.host}:{target.port}")
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f"ssh failed: {lines[-1] if lines else 'no message (exit 255)'}"


class SshDevice(RemoteShellDevice):
    """A Linux machine reached with ``ssh``; see the module docstring."""

    def __init__(
        self,
        spec: str,
        *,
        identity_file: Path | None = None,
        known_hosts: Path | None = None,
        ssh: str = "ssh",
        connect_timeout: int = 10,
    ) -> None:
        super().__init__()
        self.target = parse_ssh_spec(spec)
        self.name = str(self.target)
        self.ssh = ssh
        options = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={connect_timeout}",
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
            "-p", str(self.target.port),
        ]  # fmt: skip
        if identity_file is not None:
            options += ["-i", str(identity_file), "-o", "IdentitiesOnly=yes"]
        if known_hosts is not None:
            options += ["-o", f"UserKnownHostsFile={known_hosts}"]
            options += ["-o", "StrictHostKeyChecking=yes"]
        self.options = options

    def transport(self, command: str) -> list[str]:
        return [self.ssh, *self.options, "--", self.target.destination, command]

    def transport_failed(self, out: CommandOutput) -> bool:
        # ssh exits 255 when the connection fails or drops (and only then, unless
        # the remote command itself exits 255, which ours never do on purpose).
        return out.returncode == 255

    def transport_cause(self, out: CommandOutput) -> str:
        return ssh_failure_cause(out.output, self.target)

    def info(self) -> DeviceInfo:
        out = self.probe(["sh", "-c", LINUX_INFO_SCRIPT])
        return linux_info(self.name, "ssh", out.output)

    def push(self, local: Path, name: str) -> str:
        remote = self.remote_path(name)
        argv = self.remote_argv(["sh", "-c", 'cat > "$1"', "sh", remote])
        out = self._check(stream(argv, stdin_path=local), f"copying {Path(local).name}")
        if out.returncode != 0:
            raise DeviceProblem(f"{self.name}: could not write {remote}: {out.last_line()}")
        if local.stat().st_mode & 0o111:
            self.probe(["chmod", "755", remote])
        return remote

    def pull(self, remote: str, local: Path) -> None:
        argv = self.remote_argv(["cat", "--", remote])
        out = self._check(stream(argv, stdout_path=local), f"copying {remote}")
        if out.returncode != 0:
            raise DeviceProblem(f"{self.name}: could not read {remote}: {out.last_line()}")
