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

from bnnconvert import ir
from bnnconvert.atomic import check_writable_dir, describe_os_error
from bnnconvert.bench.benchmark_output import parse_benchmark_output
from bnnconvert.bench.reports import write_reports
from bnnconvert.bench.result import (
    LCE_DEFAULT,
    BenchResult,
    InterpreterConfig,
    Measurement,
    ModelFile,
    distinct_labels,
)
from bnnconvert.devices import AdbDevice, LocalDevice, SshDevice, open_device
from bnnconvert.devices import runner as runner_module
from bnnconvert.devices.base import CommandOutput, DeviceLost
from bnnconvert.errors import (
    BnnConvertError,
    DeviceProblem,
    FlatbufferProblem,
    OutputProblem,
    UsageProblem,
    check_whole_number,
)
from bnnconvert.limits import read_regular_file
from bnnconvert.tflite_errors import cause, explain

Progress = Callable[[str], None]

RUNNER_NAME = "bnnconvert_runner.py"
BINARY_NAME = "lce_benchmark_model"
# Runner defaults when no run count is given: stop once every median is stable.
MIN_RUNS, MAX_RUNS, MAX_SECONDS, MEDIAN_TOLERANCE = 10, 300, 30.0, 0.02
# lce_benchmark_model prints no per-run times: split the runs into invocations.
BINARY_RUNS, BINARY_INVOCATIONS = 50, 5
MAX_SWEEP_THREADS = 8


KERNELS = {"default": False, "indirect": True}  # --kernel name -> use_indirect_bgemm
EXPORT_REPORT = "export.json"


class BenchIncomplete(DeviceProblem):
    """The device was lost mid-run; ``result`` holds what was measured before."""

    def __init__(self, message: str, result: BenchResult) -> None:
        super().__init__(message)
        self.result = result


class BenchInterrupted(BnnConvertError):
    """Ctrl-C during the measurement; ``result`` holds what was measured before."""

    exit_code = 130

    def __init__(self, message: str, result: BenchResult) -> None:
        super().__init__(message)
        self.result = result


class ReportsNotWritten(OutputProblem):
    """Measuring finished but the reports could not be written; ``result`` has it all."""

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


def _read_model(path: Path) -> bytes:
    """The bytes of a ``.tflite`` file, read and verified through the graph IR.

    The same checks and messages as ``inspect`` and ``validate``: a regular
    file of bounded size, a well-formed flatbuffer, tensors small enough to allocate.

    Raises:
        UsageProblem: missing, not a regular file, too large.
        FlatbufferProblem: not a well-formed TFLite model, or huge declared tensors.
    """
    data = ir.load_bytes(path)
    try:
        ir.check_declared_sizes(ir.read(data))
    except FlatbufferProblem as e:
        raise FlatbufferProblem(f"{path}: {e}") from e
    return data


def _model_files(models: Sequence[Path | str]) -> list[ModelFile]:
    if not models:
        raise UsageProblem("Expected at least one MODEL.tflite to benchmark, got none")
    paths = [Path(m) for m in models]
    labels = distinct_labels([p.resolve() for p in paths])
    files = []
    for path, label in zip(paths, labels, strict=True):
        data = _read_model(path)
        sha256 = hashlib.sha256(data).hexdigest()
        files.append(ModelFile(str(path.resolve()), label, sha256, len(data)))
    return files


def recorded_runtime(model: ModelFile) -> tuple[str, InterpreterConfig] | None:
    """The runtime settings ``export --target`` recorded in ``export.json`` beside ``model``.

    Only an ``export.json`` whose sha256 is this file's counts (not a stale one).

    Returns:
        (target name, configuration with 1 thread), or None when there is none.
    """
    report = Path(model.path).parent / EXPORT_REPORT
    try:
        data = json.loads(read_regular_file(report, 1 << 20, "an export report"))
        if data.get("sha256") != model.sha256:
            return None
        target = data["target"]
        runtime = target["runtime"]
        config = InterpreterConfig(
            1, bool(runtime["use_indirect_bgemm"]), bool(runtime.get("use_xnnpack", False))
        )
    except (UsageProblem, ValueError, KeyError, TypeError, AttributeError):
        return None  # none, not a regular file (a FIFO would block), or not ours
    return str(target.get("name", "?")), config


def _remote_names(models: list[ModelFile]) -> list[str]:
    names = [Path(m.path).name for m in models]
    if len(set(names)) == len(names):
        return names
    return [f"{i}_{n}" for i, n in enumerate(names)]


def bench(
    models: Path | str | Sequence[Path | str],
    device: str = "local",
    *,
    output_dir: Path | str | None = None,
    threads: int | None = None,
    runs: int | None = None,
    warmup: int | None = None,
    autotune: bool = True,
    kernel: str | None = None,
    configs: Sequence[InterpreterConfig] | None = None,
    benchmark_binary: Path | str | None = None,
    op_profiling: bool = False,
    remote_python: str | None = None,
    identity: Path | str | None = None,
    known_hosts: Path | str | None = None,
    adb: str = "adb",
    ssh: str = "ssh",
    max_seconds: float = MAX_SECONDS,
    progress: Progress | None = None,
) -> BenchResult:
    """Measure inference latency of one or more models on a device.

    Models and configurations are interleaved run by run (round-robin with a
    rotating start), so slow drifts of the machine hit all of them alike.

    Arguments:
        models: one ``.tflite`` file (LCE flatbuffer) or several.
        device: ``local``, ``adb``, ``adb:SERIAL`` or ``ssh://user@host[:port]``.
        output_dir: write ``bench.json``, ``bench.md`` and ``bench.html`` there
            (checked before measuring; also written when cut short); None
            writes nothing.
        threads: with ``autotune``, the largest thread count swept (default:
            the device's cores); without, the one thread count used (default 1).
        runs: timed runs per model and configuration; ``None`` runs until every
            median is stable (Python runner) or 50 runs (benchmark binary).
        warmup: untimed runs first (default 3; 1 per invocation for the binary).
        autotune: on the host sweep kernel × XNNPACK × threads; on devices
            sweep threads.
        kernel: LCE's binary GEMM kernel, ``default`` or ``indirect`` (LCE's
            Python interpreter only). None: without ``autotune``, the setting
            ``export --target`` recorded in ``export.json`` beside the model,
            else LCE's default; with ``autotune``, both are swept.
        configs: explicit configurations (overrides ``threads``/``autotune``/``kernel``).
        benchmark_binary: a local ``lce_benchmark_model`` to push and use.
        op_profiling: ask ``lce_benchmark_model`` for per-op tables.
        remote_python: Python with LCE on an ssh board, for the Python runner.
        identity, known_hosts: ssh private key and known-hosts file (``--identity``,
            ``--known-hosts``).
        adb, ssh: the executables to use.
        max_seconds: time budget of the stable-median loop.
        progress: called with short status texts (``round 4/50 on local``); the
            command line's progress line adds a spinner and the elapsed time.

    Returns:
        A :class:`BenchResult` (``report_paths`` set when ``output_dir`` is given).

    Raises:
        UsageProblem: bad arguments; FlatbufferProblem: a model is not a TFLite file.
        OutputProblem: ``output_dir`` cannot be written (checked first).
        DeviceProblem: the device cannot run the benchmark.
        BenchIncomplete: the device was lost mid-run; ``.result`` has the partial result.
        BenchInterrupted: Ctrl-C mid-run (exit code 130); ``.result`` likewise.
        ReportsNotWritten: measured, but writing the reports failed; ``.result`` has it all.
    """
    say = progress or (lambda text: None)
    if isinstance(models, (str, Path)):
        models = [models]
    for name, value in (("runs", runs), ("warmup", warmup), ("threads", threads)):
        check_whole_number(name, value)
    if runs is not None and runs < 1:
        raise UsageProblem(f"Expected runs= of at least 1, got {runs}")
    if warmup is not None and warmup < 0:
        raise UsageProblem(f"Expected warmup= of 0 or more, got {warmup}")
    if threads is not None and threads < 1:
        raise UsageProblem(f"Expected threads= of at least 1, got {threads}")
    if kernel is not None and kernel not in KERNELS:
        raise UsageProblem(
            f"Expected kernel= to be one of {', '.join(KERNELS)} for bench, got {kernel!r}"
        )
    if op_profiling and benchmark_binary is None and device == "local":
        raise UsageProblem(
            "Per-op profiling needs lce_benchmark_model; LCE's Python interpreter has none: "
            "pass benchmark_binary= PATH or drop op_profiling="
        )
    files = _model_files(models)
    binary = Path(benchmark_binary) if benchmark_binary is not None else None
    if binary is not None and not binary.is_file():
        raise UsageProblem(f"Expected benchmark_binary= to be a file, got {str(binary)!r}")
    if output_dir is not None:
        check_writable_dir(Path(output_dir))

    dev = open_device(
        device,
        adb=adb,
        ssh=ssh,
        identity_file=Path(identity) if identity is not None else None,
        known_hosts=Path(known_hosts) if known_hosts is not None else None,
    )
    try:
        say(f"connecting to {dev.name}")
        dev.connect()
        say(f"asking {dev.name} what it is")
        info = dev.info()
        method, program = _choose_method(dev, binary, remote_python, op_profiling)
        notes: list[str] = []
        explicit = configs is not None
        recorded = _recorded_runtimes(files, method, notes)
        if configs is None:
            configs = _default_configs(method, info.cores, threads, autotune, kernel, recorded)
        elif kernel is not None:
            raise UsageProblem("Expected kernel= or explicit configurations, not both")
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
            notes=notes,
            exported={i: config for i, (_, config) in recorded.items()},
        )
        if binary is not None:
            result.tools["benchmark_binary_sha256"] = _sha256(binary)
        _measure(dev, method, program, binary, result, max_seconds, say)
    except (BenchIncomplete, BenchInterrupted) as e:
        _cleanup_after_failure(dev, e.result.notes)
        if output_dir is not None:
            _save_partial(e.result, Path(output_dir))
        raise
    except BaseException:
        _cleanup_after_failure(dev, None)
        raise
    dev.cleanup()
    if output_dir is not None:
        try:
            result.report_paths = write_reports(result, output_dir)
        except OSError as e:
            raise ReportsNotWritten(
                f"could not write the reports to {output_dir}: {describe_os_error(e)}", result
            ) from e
    return result


def _save_partial(result: BenchResult, outdir: Path) -> None:
    """Write the reports of a cut-short run; a failure becomes a note, not a new error."""
    try:
        result.report_paths = write_reports(result, outdir)
    except OSError as e:
        result.notes.append(f"could not write the reports to {outdir}: {describe_os_error(e)}")


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
        _cut_short(result, str(e))
        raise BenchIncomplete(
            f"{e}; kept the {_rounds(result)} round(s) measured before that", result
        ) from e
    except KeyboardInterrupt as e:
        _cut_short(result, "interrupted (Ctrl-C)")
        raise BenchInterrupted(
            f"interrupted; kept the {_rounds(result)} round(s) measured before that", result
        ) from e
    result.finished_at = _now()


def _rounds(result: BenchResult) -> int:
    return min((len(m.samples_us) for m in result.measurements), default=0)


def _cut_short(result: BenchResult, problem: str) -> None:
    result.problem = problem
    result.stop_reason = result.stop_reason or "cut short"
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


def _recorded_runtimes(
    files: list[ModelFile], method: str, notes: list[str]
) -> dict[int, tuple[str, InterpreterConfig]]:
    """{model index: (target, settings)} from each model's ``export.json``; notes say so.

    Only for LCE's Python interpreter, whose options these settings are
    (``lce_benchmark_model`` on a device keeps its own defaults).
    """
    if method != "python-runner":
        return {}
    recorded = {i: r for i, f in enumerate(files) if (r := recorded_runtime(f)) is not None}
    for i, (target, config) in recorded.items():
        notes.append(
            f"{files[i].name}: export.json records target {target} ({config.kernel} kernel, "
            f"{'XNNPACK' if config.xnnpack else 'no XNNPACK'}), this model's baseline"
        )
    return recorded


def _default_configs(
    method: str,
    cores: int | None,
    threads: int | None,
    autotune: bool,
    kernel: str | None,
    recorded: dict[int, tuple[str, InterpreterConfig]],
) -> list[InterpreterConfig]:
    """The configurations to measure when none are given explicitly."""
    host_runner = method == "python-runner"
    if kernel is not None and not host_runner:
        raise UsageProblem(
            "--kernel applies to LCE's Python interpreter (this machine, or ssh with "
            "--remote-python); lce_benchmark_model uses its own kernels: drop --kernel"
        )
    xnnpack = False if host_runner else None
    if not autotune:
        count = threads or 1
        if kernel is not None or not host_runner:
            indirect = KERNELS[kernel] if kernel is not None else False
            return [InterpreterConfig(count, indirect, xnnpack)]
        chosen = {config for _, config in recorded.values()} or {LCE_DEFAULT}
        return [
            InterpreterConfig(count, c.indirect_bgemm, c.xnnpack)
            for c in sorted(chosen, key=lambda c: (c.indirect_bgemm, bool(c.xnnpack)))
        ]
    limit = threads or cores or os.cpu_count() or 1
    if host_runner:
        swept = host_autotune_configs(limit)
        if kernel is not None:
            swept = [c for c in swept if c.indirect_bgemm == KERNELS[kernel]]
        return swept
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
    total = str(result.runs) if result.runs else f"≤{MAX_RUNS}, until stable"

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
            say(f"round {event['round'] + 1}/{total} on {dev.name}")
        elif kind == "done":
            result.stop_reason = event["reason"]

    say(f"loading {len(remote_models)} model(s) × {len(result.configs)} configuration(s)")
    out = dev.run([python, runner, "--spec", json.dumps(spec)], on_line=on_line)
    error = next((e["message"] for e in events if e["event"] == "error"), None)
    if error or out.returncode != 0:
        raise DeviceProblem(
            f"the runner failed on {dev.name} (exit {out.returncode}): "
            f"{_runner_failure(error, out)}"
        )


def _runner_failure(error: str | None, out: CommandOutput) -> str:
    """Why the runner failed: the cause LCE's interpreter printed, else its error event."""
    if error and not cause(out.output, binary=False):
        return error.strip()
    return explain(out.output, binary=False)


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
            say(f"round {r + 1}/{invocations}: {result.models[m.model].name}, {m.config.label}")
            out = dev.run(argv)
            if out.returncode != 0:
                raise DeviceProblem(
                    f"{BINARY_NAME} failed on {dev.name} (exit {out.returncode}): "
                    f"{explain(out.output, binary=True)}"
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
