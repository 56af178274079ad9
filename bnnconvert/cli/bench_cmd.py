"""``bnnconvert bench MODEL [MODEL ...] --device local|adb[:SERIAL]|ssh://user@host[:port]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bnnconvert.cli import output
from bnnconvert.cli.options import BenchKernel
from bnnconvert.errors import for_command_line

if TYPE_CHECKING:
    from bnnconvert.bench.result import BenchResult


def bench(
    models: Annotated[
        list[Path], typer.Argument(help="One or more .tflite files; several are compared.")
    ],
    device: Annotated[
        str,
        typer.Option("--device", "-d", help="local, adb, adb:SERIAL or ssh://user@host[:port]."),
    ] = "local",
    threads: Annotated[
        int | None,
        typer.Option(
            help="Autotune: largest thread count swept. Otherwise: threads used. "
            "[default: the device's cores; 1 without autotune]",
        ),
    ] = None,
    runs: Annotated[
        int | None,
        typer.Option(
            help="Timed runs per model and configuration. "
            "[default: until every median is stable; 50 on lce_benchmark_model]",
        ),
    ] = None,
    warmup: Annotated[
        int | None,
        typer.Option(help="Untimed runs first. [default: 3; 1 per invocation on a binary]"),
    ] = None,
    autotune: Annotated[
        bool,
        typer.Option(
            "--autotune/--no-autotune",
            help="Host: sweep kernel × XNNPACK × threads. Devices: sweep threads.",
        ),
    ] = True,
    kernel: BenchKernel = None,
    benchmark_binary: Annotated[
        Path | None,
        typer.Option(help="lce_benchmark_model to push to the device and use."),
    ] = None,
    op_profiling: Annotated[
        bool, typer.Option("--op-profiling", help="Per-op tables from lce_benchmark_model.")
    ] = False,
    outdir: Annotated[
        Path,
        typer.Option("--output", "-o", help="Where bench.json, bench.md and bench.html go."),
    ] = Path("bench"),
    remote_python: Annotated[
        str | None, typer.Option(help="ssh: a Python with larq-compute-engine on the board.")
    ] = None,
    identity: Annotated[Path | None, typer.Option(help="ssh: private key file.")] = None,
    known_hosts: Annotated[
        Path | None, typer.Option(help="ssh: known_hosts file (host key checked strictly).")
    ] = None,
    adb: Annotated[str, typer.Option(help="adb executable.")] = "adb",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Measure latency on the host, a phone (adb) or a board (ssh); write three reports."""
    from bnnconvert.bench import BenchIncomplete, BenchInterrupted, ReportsNotWritten
    from bnnconvert.bench import bench as run_bench

    try:
        with output.progress(f"Benchmarking on {device}") as step:
            result = run_bench(
                models,
                device,
                output_dir=outdir,
                threads=threads,
                runs=runs,
                warmup=warmup,
                autotune=autotune,
                kernel=kernel,
                benchmark_binary=benchmark_binary,
                op_profiling=op_profiling,
                remote_python=remote_python,
                identity=identity,
                known_hosts=known_hosts,
                adb=adb,
                progress=step,
            )
    except (BenchIncomplete, BenchInterrupted) as e:
        _show(e.result, as_json)
        if e.result.report_paths:
            output.note(f"partial results written to {outdir}/ (bench.json, .md, .html)")
        raise
    except ReportsNotWritten as e:
        _show(e.result, as_json)
        raise ReportsNotWritten(f"{e}; the results are printed above", e.result) from e
    _show(result, as_json)
    paths = result.report_paths
    output.stdout.print(
        f"reports: {paths['json']}, {paths['md']}, {paths['html']}", highlight=False
    )


def _show(result: BenchResult, as_json: bool) -> None:
    """The result on stdout: JSON, or the table and each model's fastest configuration."""
    if as_json:
        output.print_json(result.to_dict())
        return
    from bnnconvert.bench.report_md import fastest_lines

    if not any(m.samples_us for m in result.measurements):
        return
    output.wide_stdout(150).print(_table(result))
    if len(result.configs) > 1:
        for line, caveat in fastest_lines(result):
            note = f" ({caveat})" if caveat else ""
            output.stdout.print(f"fastest for {line}{note}", highlight=False, markup=False)
    for note in result.notes:
        text = f"note: {for_command_line(note)}"
        output.stdout.print(text, highlight=False, markup=False)


def _table(result: BenchResult) -> Table:
    """Median ms, p10–p90, CV, n and speedups per configuration."""
    from rich import box

    from bnnconvert.bench.report_md import SPEEDUP_RULE, ms_format, percent
    from bnnconvert.bench.stats import NOISY_CV

    ms = ms_format(result)
    several = len(result.models) > 1
    tuned = len(result.configs) > 1
    table = Table(
        title=f"{result.device.name} · {result.method}"
        + (" · ★ fastest" if tuned else "")
        + f" · * noisy (CV > {percent(NOISY_CV)})"
        + (f"\n{SPEEDUP_RULE}; baseline = {result.baseline_label}" if tuned or several else ""),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ["model"] if several else []
    columns += ["config", "median ms", "p10–p90 ms", "CV", "n"]
    columns += ["speedup vs baseline"] if tuned else []
    columns += ["speedup vs first model"] if several else []
    for name in columns:
        left = name in ("model", "config")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for i, model in enumerate(result.models):
        base, best = result.baseline(i), result.fastest(i)
        for m in sorted(result.of_model(i), key=lambda m: m.stats.median_us):
            s = m.stats
            assert s is not None and base is not None and base.stats is not None
            star = " ★" if m is best and tuned else ""
            cells = [model.name] if several else []
            cells += [
                m.config.short + star,
                ms(s.median_us),
                f"{ms(s.p10_us)}–{ms(s.p90_us)}",
                percent(s.cv) + ("*" if s.noisy else ""),
                str(s.n),
            ]
            if tuned:
                cells.append(f"{base.stats.median_us / s.median_us:.2f}×")
            if several:
                speedup = result.speedup_vs_first_model(m)
                cells.append(f"{speedup:.2f}×" if speedup and i else "–")
            table.add_row(*cells)
    return table
