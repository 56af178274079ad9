"""Render a :class:`BenchResult` as Markdown (``bench.md``) and as table rows."""

from __future__ import annotations

from collections.abc import Callable

from bnnconvert.bench.result import BenchResult, Measurement
from bnnconvert.bench.stats import NOISY_CV

SPEEDUP_RULE = "speedup = reference median ÷ this median: above 1 is faster"
NOISY_CAVEAT = "noisy: CV above {cv}; a rerun may rank the top configurations differently"


def ms(us: float | None) -> str:
    """Microseconds as milliseconds, 3 significant digits or more (``0.534``, ``12.3``)."""
    return "–" if us is None else f"{us / 1000:.3f}" if us < 10_000 else f"{us / 1000:.1f}"


def ms_format(result: BenchResult) -> Callable[[float | None], str]:
    """One milliseconds format for every number of ``result``'s tables.

    The decimals are chosen so that the smallest median keeps 3 significant
    digits (at most 3 decimals), then used for every cell alike.
    """
    medians = [m.stats.median_us for m in result.measurements if m.stats]
    smallest = min(medians, default=1000.0) / 1000
    decimals = 3 if smallest < 10 else 2 if smallest < 100 else 1

    def fmt(us: float | None) -> str:
        return "–" if us is None else f"{us / 1000:.{decimals}f}"

    return fmt


def percent(fraction: float) -> str:
    return f"{fraction * 100:.1f} %"


def baseline_definition(result: BenchResult) -> str:
    return f"baseline = {result.baseline_label}"


def latency_table(result: BenchResult) -> tuple[list[str], list[list[str]]]:
    """(header, rows): one row per measured (model, configuration), fastest first.

    Comparison columns appear only where there is something to compare:
    "speedup vs baseline" with several configurations, "speedup vs first
    model" with several models. A noisy row's CV carries "noisy".
    """
    fmt = ms_format(result)
    several, tuned = len(result.models) > 1, len(result.configs) > 1
    header = ["model"] if several else []
    header += ["configuration", "median ms", "p10 ms", "p90 ms", "min ms", "std ms", "CV", "n"]
    header += ["speedup vs baseline"] if tuned else []
    header += ["speedup vs first model"] if several else []
    rows = []
    for i, model in enumerate(result.models):
        base = result.baseline(i)
        best = result.fastest(i)
        ordered = sorted(result.of_model(i), key=lambda m: m.stats.median_us)  # type: ignore[union-attr]
        for m in ordered:
            s = m.stats
            assert s is not None
            row = [model.name] if several else []
            row += [
                m.config.label + (" ★" if m is best and len(ordered) > 1 else ""),
                fmt(s.median_us),
                fmt(s.p10_us),
                fmt(s.p90_us),
                fmt(s.min_us),
                fmt(s.std_us),
                percent(s.cv) + (" noisy" if s.noisy else ""),
                str(s.n) + (f"×{m.runs_per_sample}" if m.runs_per_sample > 1 else ""),
            ]
            if tuned:
                speedup = base.stats.median_us / s.median_us if base and base.stats else None
                row.append(f"{speedup:.2f}×" if speedup else "–")
            if several:
                vs_first = result.speedup_vs_first_model(m) if i > 0 else None
                row.append(f"{vs_first:.2f}×" if vs_first else "–")
            rows.append(row)
    return header, rows


def legend(result: BenchResult) -> list[str]:
    """What the marks and words in the tables mean, one sentence each."""
    tuned = len(result.configs) > 1
    items = ["★ marks each model's fastest configuration (lowest median)"] if tuned else []
    items += [
        f"noisy: coefficient of variation (std ÷ mean) above {percent(NOISY_CV)}",
        "p10 / p90: 10th and 90th percentile of the timed runs; all times in milliseconds",
    ]
    if tuned or len(result.models) > 1:
        items.append(SPEEDUP_RULE)
    if tuned:
        items.append(baseline_definition(result))
    if len(result.models) > 1:
        items.append(
            f"speedup vs first model: against {result.models[0].name} in the same configuration"
        )
    if any(m.runs_per_sample > 1 for m in result.measurements):
        items.append("n = N×M: N samples, each the mean of one invocation's M runs")
    if any(m.op_types for m in result.measurements):
        items.append("per-op bars: blue for LCE's binary ops (Lce…), grey for the others")
    return items


def fastest_lines(result: BenchResult) -> list[tuple[str, str | None]]:
    """Per model, one sentence on its fastest configuration, and a caveat when it is noisy."""
    fmt = ms_format(result)
    lines = []
    for row in result.summary():
        if not row["measured"]:
            lines.append((f"{row['model']}: not measured", None))
            continue
        line = f"{row['model']}: {row['fastest_config']}, median {fmt(row['fastest_median_us'])} ms"
        if row["fastest_config"] != row["baseline_config"]:
            line += (
                f"; speedup {row['speedup_vs_baseline']:.2f}× vs baseline "
                f"({row['baseline_config']}, {fmt(row['baseline_median_us'])} ms)"
            )
        ranked = len(result.configs) > 1
        noisy = row["fastest_noisy"] and ranked  # a lone configuration is ranked against nothing
        caveat = NOISY_CAVEAT.format(cv=percent(NOISY_CV)) if noisy else None
        lines.append((line, caveat))
    return lines


def describe_runs(result: BenchResult) -> str:
    """How many runs, warm-up, and interleaving, in one sentence."""
    if result.runs:
        how = f"{result.runs} timed runs"
    elif result.method == "python-runner":
        how = f"until every median was stable (stopped: {result.stop_reason or 'cut short'})"
    else:
        how = "lce_benchmark_model's default run count, split into several invocations"
    several = len(result.measurements) > 1
    order = "; models and configurations interleaved run by run" if several else ""
    return f"{how}; {result.warmup} warm-up run(s) first{order}"


def describe_method(result: BenchResult) -> str:
    if result.method == "python-runner":
        lce = result.tools.get("device_larq_compute_engine") or "?"
        return (
            f"LCE {lce} Python interpreter via bnnconvert's runner; "
            "each sample is one `predict` call (input copy, inference, output copy)"
        )
    return (
        "lce_benchmark_model; it prints no per-run times, so each sample is the mean "
        "of one invocation's runs"
    )


def describe_device(result: BenchResult) -> str:
    d = result.device
    parts = [p for p in (d.model, d.soc, d.cpu, d.abi, d.os) if p]
    if d.cores:
        parts.append(f"{d.cores} cores")
    return f"{d.name}: " + ", ".join(parts)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return out


def op_breakdown(result: BenchResult) -> list[tuple[str, Measurement]]:
    """(title, measurement) for each measurement that carries per-op tables."""
    return [
        (f"{result.models[m.model].name}, {m.config.label}", m)
        for m in result.measurements
        if m.op_types
    ]


def render_markdown(result: BenchResult) -> str:
    """``bench.md``: device, method, latency table, fastest configurations, per-op tables."""
    lines = ["# bnnconvert bench", ""]
    if not result.complete:
        lines += [f"**Incomplete:** {result.problem}. The figures below are what was measured "
                  "before that.", ""]  # fmt: skip
    lines += [
        f"- Device: {describe_device(result)}",
        f"- Method: {describe_method(result)}",
        f"- Runs: {describe_runs(result)}",
        f"- Started {result.started_at}, finished {result.finished_at or '–'}",
        *(f"- {item}" for item in legend(result)),
        "",
        "## Models",
        "",
    ]
    lines += _table(
        ["#", "model", "size", "sha256"],
        [
            [str(i), m.name, f"{m.size_bytes / 1024:.1f} KiB", f"`{m.sha256}`"]
            for i, m in enumerate(result.models)
        ],
    )
    lines += ["", "## Latency", ""]
    lines += _table(*latency_table(result))
    lines += ["", "## Fastest configuration" if len(result.configs) > 1 else "## Median", ""]
    lines += [f"- {line}" + (f" ({c})" if c else "") for line, c in fastest_lines(result)]
    for title, m in op_breakdown(result):
        lines += ["", f"## Per-op time: {title}", ""]
        lines += _table(
            ["node type", "count", "avg ms", "share"],
            [
                [r.node_type, str(r.count), f"{r.avg_ms:.3f}", f"{r.percent:.1f} %"]
                for r in m.op_types
            ],
        )
    if result.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"
