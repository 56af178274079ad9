"""``bench``: time LCE flatbuffers on a device, interleaving models and configurations."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import platform
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path

from bnnconvert.bench.benchmark_output import parse_benchmark_output
from bnnconvert.bench.result import (
    LCE_DEFAULT,
    BenchResult,
    InterpreterConfig,
    Measurement,
    ModelFile,
)
from bnnconvert.devices import AdbDevice, LocalDevice, SshDevice, open_device
from bnnconvert.devices import runner as runner_module
from bnnconvert.devices.base import DeviceLost
from bnnconvert.errors import DeviceProblem, FlatbufferProblem, UsageProblem

Progress = Callable[[str], None]

RUNNER_NAME = "bnnconvert_runner.py"
BINARY_NAME = "lce_benchmark_model"
# Runner defaults when no run count is given: stop once every median is stable.
MIN_RUNS, MAX_RUNS, MAX_SECONDS, MEDIAN_TOLERANCE = 10, 300, 30.0, 0.02
# lce_benchmark_model prints no per-run times: split the runs into invocations.
BINARY_RUNS, BINARY_INVOCATIONS = 50, 5
MAX_SWEEP_THREADS = 8


class BenchIncomplete(DeviceProblem):
    """The device was lost mid-run; ``result`` holds what was measured before."""

    def __init__(self, message: str, result: BenchResult) -> None:
        super().__init__(message)
        self.result = result


def thread_sweep(limit: int) -> list[int]:
    """Thread counts to try: 1..limit when small, else powers of two and ``limit``."""
    limit = max(1, min(limit, MAX_SWEEP_THREADS))
    if limit <= 4:
        return list(range(1, limit + 1))
    return sorted({*(2**k for k in range(int(math.log2(limit)) + 1)), limit})


def host_autotune_configs(max_threads: int) -> list[InterpreterConfig]:
    """Every combination of bgemm kernel, XNNPACK and thread count, LCE's default first."""
    configs = [
        InterpreterConfig(t, indirect, xnn)
        for t in thread_sweep(max_threads)
        for indirect in (False, True)
        for xnn in (False, True)
    ]
    configs.remove(LCE_DEFAULT)
    return [LCE_DEFAULT, *configs]


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _model_files(models: Sequence[Path | str]) -> list[ModelFile]:
    if not models:
        raise UsageProblem("Expected at least one MODEL.tflite to benchmark, got none")
    files = []
    for m in models:
        path = Path(m)
        if not path.is_file():
            raise UsageProblem(f"Expected a .tflite file, but {str(path)!r} does not exist")
        head = path.read_bytes()[:8]
        if head[4:8] != b"TFL3":
            raise FlatbufferProblem(
                f"{path.name} is not a TFLite flatbuffer (no 'TFL3' identifier at byte 4); "
                "pass the file `bnnconvert export` wrote"
            )
        files.append(ModelFile(str(path.resolve()), path.name, _sha256(path), path.stat().st_size))
    return files


def _remote_names(models: list[ModelFile]) -> list[str]:
    names = [m.name for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{n}" for i, n in enumerate(names)]


def bench(
    models: Sequence[Path | str],
    device: str = "local",
    *,
    threads: int | None = None,
    runs: int | None = None,
    warmup: int | None = None,
    autotune: bool = True,
    configs: Sequence[InterpreterConfig] | None = None,
    benchmark_binary: Path | str | None = None,
    op_profiling: bool = False,
    remote_python: str | None = None,
    identity_file: Path | None = None,
    known_hosts: Path | None = None,
    adb: str = "adb",
    ssh: str = "ssh",
    max_seconds: float = MAX_SECONDS,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure inference latency of one or more models on a device.

    Models and configurations are interleaved run by run (round-robin with a
    rotating start), so slow drifts of the machine hit all of them alike.

    Arguments:
        models: ``.tflite`` files (LCE flatbuffers).
        device: ``local``, ``adb``, ``adb:SERIAL`` or ``ssh://user@host[:port]``.
        threads: with ``autotune``, the largest thread count swept (default:
            the device's cores); without, the one thread count used (default 1).
        runs: timed runs per model and configuration; ``None`` runs until every
            median is stable (Python runner) or 50 runs (benchmark binary).
        warmup: untimed runs first (default 3; 1 per invocation for the binary).
        autotune: on the host sweep bgemm kernel × XNNPACK × threads; on
            devices sweep threads.
        configs: explicit configurations (overrides ``threads``/``autotune``).
        benchmark_binary: a local ``lce_benchmark_model`` to push and use.
        op_profiling: ask ``lce_benchmark_model`` for per-op tables.
        remote_python: Python with LCE on an ssh board, for the Python runner.
        identity_file, known_hosts: ssh key and known-hosts file.
        adb, ssh: the executables to use.
        max_seconds: time budget of the stable-median loop.
        progress: called with short status texts.

    Returns:
        A :class:`BenchResult`.

    Raises:
        UsageProblem: bad arguments.
        FlatbufferProblem: a model is not a TFLite file.
        DeviceProblem: the device cannot run the benchmark.
        BenchIncomplete: the device was lost mid-run; ``.result`` has the partial result.
    """
    say = progress or (lambda text: None)
    if runs is not None and runs < 1:
        raise UsageProblem(f"Expected --runs of at least 1, got {runs}")
    if warmup is not None and warmup < 0:
        raise UsageProblem(f"Expected --warmup of 0 or more, got {warmup}")
    if threads is not None and threads < 1:
        raise UsageProblem(f"Expected --threads of at least 1, got {threads}")
    if op_profiling and benchmark_binary is None and device == "local":
        raise UsageProblem(
            "Per-op profiling needs lce_benchmark_model; LCE's Python interpreter has none: "
            "pass --benchmark-binary PATH or drop --op-profiling"
        )
    files = _model_files(models)
    binary = Path(benchmark_binary) if benchmark_binary is not None else None
    if binary is not None and not binary.is_file():
        raise UsageProblem(f"Expected --benchmark-binary to be a file, got {str(binary)!r}")

    explicit = configs is not None
    dev = open_device(
        device, adb=adb, ssh=ssh, identity_file=identity_file, known_hosts=known_hosts
    )
    try:
        say(f"asking {dev.name} what it is")
        info = dev.info()
        method, program = _choose_method(dev, binary, remote_python, op_profiling)
        if configs is None:
            configs = _default_configs(method, info.cores, threads, autotune)
        result = BenchResult(
            device=info,
            method=method,
            models=files,
            configs=list(configs),
            measurements=[Measurement(i, c) for i in range(len(files)) for c in configs],
            warmup=warmup if warmup is not None else (3 if method == "python-runner" else 1),
            runs=runs,
            autotune=autotune and not explicit,
            op_profiling=op_profiling,
            tools={
                "bnnconvert": _version("bnnconvert"),
                "host_python": platform.python_version(),
                "host_larq_compute_engine": _version("larq-compute-engine"),
            },
            started_at=_now(),
        )
        if binary is not None:
            result.tools["benchmark_binary_sha256"] = _sha256(binary)
        _measure(dev, method, program, binary, result, max_seconds, say)
    except BenchIncomplete as e:
        _cleanup_after_failure(dev, e.result.notes)
        raise
    except BaseException:
        _cleanup_after_failure(dev, None)
        raise
    dev.cleanup()
    return result


def _measure(
    dev: LocalDevice | AdbDevice | SshDevice,
    method: str,
    program: str,
    binary: Path | None,
    result: BenchResult,
    max_seconds: float,
    say: Progress,
) -> None:
    try:
        say(f"copying {len(result.models)} model(s) to {dev.name}")
        remote_models = [
            dev.push(Path(f.path), name)
            for f, name in zip(result.models, _remote_names(result.models), strict=True)
        ]
        if method == "python-runner":
            _run_python_runner(dev, program, remote_models, result, max_seconds, say)
        else:
            _run_benchmark_binary(dev, program, binary, remote_models, result, say)
    except DeviceLost as e:
        result.problem = str(e)
        result.finished_at = _now()
        rounds = min((len(m.samples_us) for m in result.measurements), default=0)
        raise BenchIncomplete(
            f"{e}; kept the {rounds} round(s) measured before that", result
        ) from e
    result.finished_at = _now()


def _cleanup_after_failure(
    dev: LocalDevice | AdbDevice | SshDevice, notes: list[str] | None
) -> None:
    """Clean up while another error is on its way out; that error is the one to report."""
    try:
        dev.cleanup()
    except DeviceProblem as e:
        if notes is not None:
            notes.append(f"could not remove the work directory on the device: {e}")


def _choose_method(
    dev: LocalDevice | AdbDevice | SshDevice,
    binary: Path | None,
    remote_python: str | None,
    op_profiling: bool,
) -> tuple[str, str]:
    """("python-runner", python) or ("lce_benchmark_model", path on device or '')."""
    if binary is not None:
        return "lce_benchmark_model", ""
    if isinstance(dev, LocalDevice):
        return "python-runner", dev.python
    found = dev.find_program(BINARY_NAME)
    if found:
        return "lce_benchmark_model", found
    if isinstance(dev, SshDevice) and not op_profiling:
        for python in [remote_python] if remote_python else ["python3", "python"]:
            if dev.has_python_lce(python):
                return "python-runner", python
    where = (
        "with Python + larq-compute-engine (--remote-python) " if isinstance(dev, SshDevice) else ""
    )
    raise DeviceProblem(
        f"{dev.name} has no {BINARY_NAME} on its PATH {where}to run the model; pass "
        "--benchmark-binary PATH (LCE releases ship lce_benchmark_model for Android arm64 "
        "and Linux aarch64)"
    )


def _default_configs(
    method: str, cores: int | None, threads: int | None, autotune: bool
) -> list[InterpreterConfig]:
    host_runner = method == "python-runner"
    xnnpack = False if host_runner else None
    if not autotune:
        return [InterpreterConfig(threads or 1, False, xnnpack)]
    limit = threads or cores or os.cpu_count() or 1
    if host_runner:
        return host_autotune_configs(limit)
    return [InterpreterConfig(t, False, None) for t in thread_sweep(limit)]


def _run_python_runner(
    dev: LocalDevice | AdbDevice | SshDevice,
    python: str,
    remote_models: list[str],
    result: BenchResult,
    max_seconds: float,
    say: Progress,
) -> None:
    runner = dev.push(Path(runner_module.__file__), RUNNER_NAME)
    spec = {
        "models": remote_models,
        "configs": [
            {"threads": c.threads, "indirect_bgemm": c.indirect_bgemm, "xnnpack": bool(c.xnnpack)}
            for c in result.configs
        ],
        "warmup": result.warmup,
        "runs": result.runs,
        "min_runs": MIN_RUNS,
        "max_runs": MAX_RUNS,
        "max_seconds": max_seconds,
        "median_tolerance": MEDIAN_TOLERANCE,
    }
    jobs: list[Measurement] = []
    events: list[dict] = []

    def on_line(line: str) -> None:
        if not line.startswith(runner_module.PREFIX):
            return
        event = json.loads(line[len(runner_module.PREFIX) :])
        events.append(event)
        kind = event["event"]
        if kind == "start":
            result.tools["device_python"] = event.get("python")
            result.tools["device_numpy"] = event.get("numpy")
            result.tools["device_larq_compute_engine"] = event.get("lce")
        elif kind == "loaded":
            config = result.configs[event["config"]]
            m = next(
                m for m in result.measurements if m.model == event["model"] and m.config == config
            )
            m.init_us = event["init_us"]
            jobs.append(m)
        elif kind == "warmup":
            jobs[event["job"]].first_us = event["first_us"]
            jobs[event["job"]].warmup_us = event["warmup_us"]
        elif kind == "round":
            for m, us in zip(jobs, event["us"], strict=True):
                m.samples_us.append(us)
            say(f"round {event['round'] + 1} on {dev.name}")
        elif kind == "done":
            result.stop_reason = event["reason"]

    say(f"loading {len(remote_models)} model(s) × {len(result.configs)} configuration(s)")
    out = dev.run([python, runner, "--spec", json.dumps(spec)], on_line=on_line)
    error = next((e["message"] for e in events if e["event"] == "error"), None)
    if error or out.returncode != 0:
        raise DeviceProblem(
            f"the runner failed on {dev.name}: {error or out.last_line()} (exit {out.returncode})"
        )


def _run_benchmark_binary(
    dev: LocalDevice | AdbDevice | SshDevice,
    program: str,
    binary: Path | None,
    remote_models: list[str],
    result: BenchResult,
    say: Progress,
) -> None:
    if binary is not None:
        program = dev.push(binary, BINARY_NAME)
    total = result.runs or BINARY_RUNS
    invocations = min(BINARY_INVOCATIONS, total)
    per_invocation = math.ceil(total / invocations)
    jobs = result.measurements
    for r in range(invocations):
        for k in range(len(jobs)):
            m = jobs[(r + k) % len(jobs)]
            argv = benchmark_argv(
                program,
                remote_models[m.model],
                m.config,
                runs=per_invocation,
                warmup=result.warmup,
                op_profiling=result.op_profiling,
            )
            say(
                f"invocation {r + 1}/{invocations}: {result.models[m.model].name}, {m.config.label}"
            )
            out = dev.run(argv)
            if out.returncode != 0:
                raise DeviceProblem(
                    f"{BINARY_NAME} failed on {dev.name} (exit {out.returncode}): {out.last_line()}"
                )
            parsed = parse_benchmark_output(out.output)
            m.tool_runs.append(parsed)
            stats = parsed.inference
            m.samples_us.append(stats.avg if stats and stats.avg else parsed.inference_avg_us)
            m.runs_per_sample = stats.count if stats else per_invocation
            if m.init_us is None:
                m.init_us, m.first_us = parsed.init_us, parsed.first_us
    result.stop_reason = "runs"


def benchmark_argv(
    program: str,
    model: str,
    config: InterpreterConfig,
    *,
    runs: int,
    warmup: int,
    op_profiling: bool,
) -> list[str]:
    """The argv of one ``lce_benchmark_model`` invocation (no shell involved)."""
    argv = [
        program,
        f"--graph={model}",
        f"--num_threads={config.threads}",
        f"--num_runs={runs}",
        f"--warmup_runs={warmup}",
    ]
    if config.xnnpack is not None:
        argv.append(f"--use_xnnpack={str(config.xnnpack).lower()}")
    if op_profiling:
        argv.append("--enable_op_profiling=true")
    return argv
