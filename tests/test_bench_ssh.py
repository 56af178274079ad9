"""The ssh device against a real OpenSSH server on 127.0.0.1, end to end.

The fixture starts ``sshd -D -e`` with a throwaway host key and user key, on
a free port, listening on 127.0.0.1 only, accepting only that key for root.
The "board" is this machine; its Python with LCE is the project's venv, so
the shipped runner runs for real.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bnnconvert.bench import LCE_DEFAULT, BenchIncomplete, InterpreterConfig, bench
from bnnconvert.devices import SshDevice
from bnnconvert.errors import DeviceProblem

# Skipped on a developer machine without sshd; in CI (CI set) a missing sshd fails.
pytestmark = pytest.mark.skipif(
    shutil.which("sshd") is None
    and not Path("/usr/sbin/sshd").exists()
    and not os.environ.get("CI"),
    reason="needs OpenSSH server (Debian openssh-server; ./setup.sh --test installs it)",
)

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
BOARD_PYTHON = sys.executable  # the venv's Python: numpy + larq-compute-engine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd forks a new session per connection)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Sshd:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        host_key, self.user_key = tmp / "host_ed25519", tmp / "user_ed25519"
        for key in (host_key, self.user_key):
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True
            )
        (tmp / "authorized_keys").write_text((tmp / "user_ed25519.pub").read_text())
        host_pub = (tmp / "host_ed25519.pub").read_text().split()
        self.known_hosts = tmp / "known_hosts"
        self.known_hosts.write_text(f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n")
        self.config = tmp / "sshd_config"
        self.config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"PidFile {tmp}/sshd.pid\nAuthorizedKeysFile {tmp}/authorized_keys\n"
            "StrictModes no\nPermitRootLogin prohibit-password\nPubkeyAuthentication yes\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "AllowUsers root\n"
        )
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privsep directory
        self.log = open(tmp / "sshd.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=self.log, stderr=self.log
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"sshd did not start: {(tmp / 'sshd.log').read_text()}")

    @property
    def spec(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def kill(self) -> None:
        """The board disappears: sshd and every session it forked, at once."""
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.kill()
        self.log.close()


@pytest.fixture
def sshd(tmp_path):
    server = Sshd(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def tiny_model(tmp_path, tiny_bnn_tflite) -> Path:
    path = tmp_path / "tiny_bnn.tflite"
    path.write_bytes(tiny_bnn_tflite)
    return path


def _device(server: Sshd) -> SshDevice:
    return SshDevice(server.spec, identity_file=server.user_key, known_hosts=server.known_hosts)


def test_ssh_device_info_push_pull_cleanup(sshd, tmp_path):
    dev = _device(sshd)
    info = dev.info()
    assert info.kind == "ssh" and info.cores == os.cpu_count() and info.abi == os.uname().machine
    src = tmp_path / "payload.bin"
    src.write_bytes(bytes(range(256)) * 100)
    remote = dev.push(src, 'it\'s a "payload" $(x).bin')
    assert remote.startswith("/tmp/bnnconvert.") and Path(remote).read_bytes() == src.read_bytes()
    back = tmp_path / "back.bin"
    dev.pull(remote, back)
    assert back.read_bytes() == src.read_bytes()
    workdir = Path(remote).parent
    dev.cleanup()
    assert not workdir.exists()


def _workdirs() -> set[Path]:
    return set(Path("/tmp").glob("bnnconvert.*"))


def test_bench_over_ssh_with_the_python_runner(sshd, tiny_model):
    before = _workdirs()
    configs = [LCE_DEFAULT, InterpreterConfig(1, indirect_bgemm=True)]
    result = bench(
        [tiny_model],
        sshd.spec,
        configs=configs,
        runs=5,
        warmup=1,
        remote_python=BOARD_PYTHON,
        identity=sshd.user_key,
        known_hosts=sshd.known_hosts,
    )
    assert result.complete and result.method == "python-runner"
    assert result.device.name == sshd.spec
    assert result.tools["device_larq_compute_engine"] == "0.16.0"
    for m in result.measurements:
        assert len(m.samples_us) == 5 and m.first_us > 0 and m.init_us > 0
        assert all(0 < t < 5e6 for t in m.samples_us)
    assert result.models[0].sha256 and result.stop_reason == "runs"
    assert _workdirs() == before  # the remote work directory was removed


NASTY_NAMES = [
    "a;rm -rf ~.tflite",
    "b;touch bnnconvert_pwned_semicolon;.tflite",
    "$(touch bnnconvert_pwned_subst).tflite",
    "`touch bnnconvert_pwned_tick`.tflite",
    'it\'s "quoted" & | > x.tflite',
    "-rf.tflite",
]


def test_injection_named_models_are_harmless_over_ssh(sshd, tmp_path, tiny_bnn_tflite):
    home = Path.home()
    canary = home / "~.tflite"  # what `rm -rf ~.tflite` would delete in the remote cwd
    canary.write_text("canary")
    try:
        models = []
        for name in NASTY_NAMES:
            (tmp_path / name).write_bytes(tiny_bnn_tflite)
            models.append(tmp_path / name)
        result = bench(
            models,
            sshd.spec,
            configs=[InterpreterConfig(1, indirect_bgemm=True)],
            runs=2,
            warmup=1,
            remote_python=BOARD_PYTHON,
            identity=sshd.user_key,
            known_hosts=sshd.known_hosts,
        )
        assert [m.name for m in result.models] == NASTY_NAMES
        assert all(len(m.samples_us) == 2 for m in result.measurements)
        assert canary.read_text() == "canary"
        assert not list(home.glob("bnnconvert_pwned*"))
        assert not list(Path("/tmp").glob("bnnconvert_pwned*"))
    finally:
        canary.unlink(missing_ok=True)


def test_killing_sshd_mid_run_keeps_partial_results(sshd, tiny_model, tmp_path):
    from bnnconvert.bench import write_reports

    before = _workdirs()

    def kill_after_three_rounds(text: str) -> None:
        if text.startswith("round 3/") and sshd.proc.poll() is None:
            sshd.kill()

    with pytest.raises(BenchIncomplete) as caught:
        bench(
            [tiny_model],
            sshd.spec,
            configs=[LCE_DEFAULT],
            runs=5000,
            warmup=1,
            remote_python=BOARD_PYTHON,
            identity=sshd.user_key,
            known_hosts=sshd.known_hosts,
            progress=kill_after_three_rounds,
        )
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{sshd.spec} stopped answering while running ")
    assert "kept the" in message
    result = caught.value.result
    samples = result.measurements[0].samples_us
    assert 3 <= len(samples) < 5000
    assert not result.complete and result.problem
    assert any("could not remove the work directory" in n for n in result.notes)
    left = _workdirs() - before  # the board vanished before clean-up could run
    assert len(left) == 1
    shutil.rmtree(left.pop())
    paths = write_reports(result, tmp_path / "out")
    assert "Incomplete" in paths["md"].read_text()
    assert f"{len(samples)}" in paths["json"].read_text()


def test_unreachable_board_names_the_cause_first(tmp_path, tiny_model):
    port = _free_port()  # nothing listens there
    with pytest.raises(DeviceProblem) as caught:
        bench([tiny_model], f"ssh://root@127.0.0.1:{port}", runs=1, known_hosts=tmp_path / "kh")
    assert str(caught.value) == (
        f"ssh://root@127.0.0.1:{port}: connection refused: nothing listens on "
        f"127.0.0.1:{port}; is sshd running there?"
    )


def test_unknown_host_is_named_as_such(tiny_model):
    with pytest.raises(DeviceProblem) as caught:
        bench([tiny_model], "ssh://pi@no-such-board.invalid", runs=1)
    assert str(caught.value) == (
        "ssh://pi@no-such-board.invalid:22: unknown host no-such-board.invalid: the name does "
        "not resolve; check it or use the board's IP address"
    )


def test_a_key_the_board_refuses_is_an_authentication_failure(sshd, tmp_path, tiny_model):
    stranger = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    with pytest.raises(DeviceProblem) as caught:
        bench(
            [tiny_model],
            sshd.spec,
            runs=1,
            identity=stranger,
            known_hosts=sshd.known_hosts,
        )
    assert str(caught.value).startswith(f"{sshd.spec}: authentication failed: ")
    assert "pass --identity KEY" in str(caught.value)
