"""Render a :class:`BenchResult` as Markdown (``bench.md``) and as table rows."""

from __future__ import annotations

from bnnconvert.bench.result import BenchResult, Measurement
from bnnconvert.bench.stats import NOISY_CV

LATENCY_HEADER = [
    "model",
    "configuration",
    "median ms",
    "p10",
    "p90",
    "min",
    "std",
    "CV",
    "n",
    "speedup vs baseline",
    "vs first model",
]


def ms(us: float | None) -> str:
    return "–" if us is None else f"{us / 1000:.3f}" if us < 10_000 else f"{us / 1000:.1f}"


def latency_rows(result: BenchResult) -> list[list[str]]:
    """One row per measured (model, configuration), fastest first within a model."""
    rows = []
    for i, model in enumerate(result.models):
        base = result.baseline(i)
        best = result.fastest(i)
        ordered = sorted(result.of_model(i), key=lambda m: m.stats.median_us)  # type: ignore[union-attr]
        for m in ordered:
            s = m.stats
            assert s is not None
            speedup = base.stats.median_us / s.median_us if base and base.stats else None
            ratio = result.ratio_to_first_model(m) if i > 0 else None
            label = m.config.label + (" ★" if m is best and len(ordered) > 1 else "")
            rows.append(
                [
                    model.name,
                    label,
                    ms(s.median_us),
                    ms(s.p10_us),
                    ms(s.p90_us),
                    ms(s.min_us),
                    ms(s.std_us),
                    f"{s.cv:.1%}" + (" noisy" if s.noisy else ""),
                    str(s.n) + (f"×{m.runs_per_sample}" if m.runs_per_sample > 1 else ""),
                    f"{speedup:.2f}×" if speedup else "–",
                    f"{ratio:.2f}×" if ratio else "–",
                ]
            )
    return rows


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
    runs = (
        f"{result.runs} timed runs"
        if result.runs
        else f"until every median was stable (stopped: {result.stop_reason or 'cut short'})"
    )
    lines += [
        f"- Device: {describe_device(result)}",
        f"- Method: {describe_method(result)}",
        f"- Runs: {runs}; {result.warmup} warm-up run(s) first; models and configurations "
        "interleaved run by run",
        f"- Started {result.started_at}, finished {result.finished_at or '–'}",
        f"- CV above {NOISY_CV:.0%} is flagged noisy; ★ marks the fastest configuration; "
        "speedup is against LCE's default configuration (1 thread, default bgemm, "
        "no XNNPACK) when measured",
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
    lines += _table(LATENCY_HEADER, latency_rows(result))
    lines += ["", "## Fastest configuration", ""]
    for row in result.summary():
        if not row["measured"]:
            lines.append(f"- {row['model']}: not measured")
            continue
        median = ms(row["fastest_median_us"])
        line = f"- {row['model']}: **{row['fastest_config']}**, median {median} ms"
        if row["fastest_config"] != row["baseline_config"]:
            line += (
                f"; {row['baseline_config']}: {ms(row['baseline_median_us'])} ms "
                f"({row['speedup_vs_baseline']:.2f}× faster)"
            )
        lines.append(line)
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
