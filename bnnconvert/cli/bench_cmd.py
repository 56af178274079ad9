"""``bnnconvert bench MODEL [MODEL ...] --device local|adb[:SERIAL]|ssh://user@host[:port]``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from bnnconvert.cli import output

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
        typer.Option(help="Autotune: largest thread count swept. Otherwise: threads used."),
    ] = None,
    runs: Annotated[
        int | None,
        typer.Option(help="Timed runs [default: until the median is stable; 50 on a binary]."),
    ] = None,
    warmup: Annotated[int | None, typer.Option(help="Untimed runs first [default: 3].")] = None,
    autotune: Annotated[
        bool,
        typer.Option(
            "--autotune/--no-autotune",
            help="Host: sweep bgemm kernel × XNNPACK × threads. Devices: sweep threads.",
        ),
    ] = True,
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
    from bnnconvert.bench import BenchIncomplete, write_reports
    from bnnconvert.bench import bench as run_bench

    try:
        with output.progress(f"Benchmarking on {device}") as step:
            result = run_bench(
                models,
                device,
                threads=threads,
                runs=runs,
                warmup=warmup,
                autotune=autotune,
                benchmark_binary=benchmark_binary,
                op_profiling=op_profiling,
                remote_python=remote_python,
                identity_file=identity,
                known_hosts=known_hosts,
                adb=adb,
                progress=step,
            )
    except BenchIncomplete as e:
        paths = write_reports(e.result, outdir)
        output.note(f"partial results written to {paths['md'].parent}/ (bench.json, .md, .html)")
        raise
    paths = write_reports(result, outdir)
    if as_json:
        output.print_json(result.to_dict())
        return
    output.wide_stdout(110).print(_table(result))
    for s in result.summary():
        if s["measured"] and len(result.configs) > 1:
            output.stdout.print(
                f"fastest for {s['model']}: {s['fastest_config']}, "
                f"{s['speedup_vs_baseline']:.2f}× faster than {s['baseline_config']}",
                highlight=False,
            )
    output.stdout.print(
        f"reports: {paths['json']}, {paths['md']}, {paths['html']}", highlight=False
    )


def _table(result: BenchResult) -> Table:
    """Median ms, p10–p90, CV, n, speedup (and ratio to the first model) per configuration."""
    from rich import box

    from bnnconvert.bench.report_md import ms

    several = len(result.models) > 1
    table = Table(
        title=f"{result.device.name} · {result.method} · * = noisy (CV > 5 %)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    columns = ["model"] if several else []
    columns += ["config", "median ms", "p10–p90 ms", "CV", "n", "speedup"]
    columns += ["vs first"] if several else []
    for name in columns:
        left = name in ("model", "config")
        table.add_column(name, justify="left" if left else "right", no_wrap=True)
    for i, model in enumerate(result.models):
        base, best = result.baseline(i), result.fastest(i)
        for m in sorted(result.of_model(i), key=lambda m: m.stats.median_us):
            s, b = m.stats, base.stats
            star = " ★" if m is best and len(result.configs) > 1 else ""
            cells = [model.name] if several else []
            cells += [
                m.config.short + star,
                ms(s.median_us),
                f"{ms(s.p10_us)}–{ms(s.p90_us)}",
                f"{s.cv:.0%}" + ("*" if s.noisy else ""),
                str(s.n),
                f"{b.median_us / s.median_us:.2f}×",
            ]
            if several:
                ratio = result.ratio_to_first_model(m)
                cells.append(f"{ratio:.2f}×" if ratio and i else "–")
            table.add_row(*cells)
    return table
