"""Render a :class:`BenchResult` as one self-contained HTML page with inline SVG plots.

No scripts, fonts or stylesheets are fetched: the page opens offline. Plots:
latency distribution per configuration (every sample, p10–p90 band, median),
per-op time by node type, and the models side by side.
"""

from __future__ import annotations

import math
from html import escape

from bnnconvert.bench.report_md import (
    LATENCY_HEADER,
    describe_device,
    describe_method,
    latency_rows,
    ms,
    op_breakdown,
)
from bnnconvert.bench.result import BenchResult, Measurement
from bnnconvert.bench.stats import NOISY_CV

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1100px;color:#1d232a;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #dde3ea;padding-bottom:.2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{padding:3px 8px;border-bottom:1px solid #e7ebf0;text-align:right}
td:first-child,td:nth-child(2),th:first-child,th:nth-child(2){text-align:left}
th{background:#f4f6f9}.meta{color:#4a5560}.noisy{color:#b35900;font-weight:600}
.warn{background:#fff3e0;border-left:4px solid #e67e22;padding:.6em 1em}
.best{font-weight:600}svg{display:block;margin:.5em 0}
code{font-size:12px;color:#4a5560}
"""
_PALETTE = ["#2f6db5", "#d9622b", "#3a9a5b", "#8e4fb5", "#b5952f", "#2fa3b5", "#b52f6d"]
_FONT = 'font-family="system-ui,sans-serif"'


def _nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        ticks = []
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            ticks += [m * 10**e for m in (1, 2, 5) if lo <= m * 10**e <= hi]
        return ticks or [lo, hi]
    step = 10 ** math.floor(math.log10((hi - lo) or hi or 1))
    for m in (1, 2, 5, 10):
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + k * step for k in range(int((hi - start) / step) + 1)]


def _fmt_ms(v: float) -> str:
    return f"{v:.3g}"


def distribution_svg(result: BenchResult, model: int) -> str:
    """Every sample of every configuration of ``model`` on a shared axis (ms)."""
    measured = sorted(result.of_model(model), key=lambda m: m.stats.median_us)  # type: ignore[union-attr]
    if not measured:
        return ""
    values = [v / 1000 for m in measured for v in m.samples_us]
    lo, hi = min(values), max(values)
    log = hi / lo > 4
    if log:
        lo, hi = lo / 1.15, hi * 1.15
    else:
        pad = (hi - lo) * 0.08 or hi * 0.05
        lo, hi = max(0.0, lo - pad), hi + pad
    left, right, row_h, top = 310, 130, 30, 14
    width = 1040
    plot_w = width - left - right
    height = top + row_h * len(measured) + 40

    def x(v: float) -> float:
        if log:
            return left + plot_w * (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
        return left + plot_w * (v - lo) / (hi - lo)

    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" {_FONT} font-size="12">']  # fmt: skip
    axis_y = top + row_h * len(measured) + 4
    for t in _nice_ticks(lo, hi, log):
        parts.append(f'<line x1="{x(t):.1f}" y1="{top - 4}" x2="{x(t):.1f}" y2="{axis_y}" '
                     'stroke="#e3e8ee"/>')  # fmt: skip
        parts.append(f'<text x="{x(t):.1f}" y="{axis_y + 16}" text-anchor="middle" '
                     f'fill="#4a5560">{_fmt_ms(t)}</text>')  # fmt: skip
    scale = "log scale" if log else "linear scale"
    parts.append(f'<text x="{left + plot_w / 2}" y="{axis_y + 32}" text-anchor="middle" '
                 f'fill="#4a5560">latency per run, ms ({scale})</text>')  # fmt: skip
    best = measured[0]
    for r, m in enumerate(measured):
        s = m.stats
        assert s is not None
        cy = top + row_h * r + row_h / 2
        color = _PALETTE[result.configs.index(m.config) % len(_PALETTE)]
        weight = ' font-weight="700"' if m is best and len(measured) > 1 else ""
        parts.append(f'<text x="{left - 10}" y="{cy + 4}" text-anchor="end"{weight}>'
                     f"{escape(m.config.label)}</text>")  # fmt: skip
        parts.append(f'<rect x="{x(s.p10_us / 1000):.1f}" y="{cy - 8}" '
                     f'width="{max(1.5, x(s.p90_us / 1000) - x(s.p10_us / 1000)):.1f}" height="16" '
                     f'fill="{color}" fill-opacity="0.16" rx="3"/>')  # fmt: skip
        n = len(m.samples_us)
        for k, v in enumerate(m.samples_us):
            jitter = ((k * 7919) % 13 - 6) * 0.9 if n > 1 else 0
            parts.append(f'<circle cx="{x(v / 1000):.1f}" cy="{cy + jitter:.1f}" r="2" '
                         f'fill="{color}" fill-opacity="0.55"/>')  # fmt: skip
        mx = x(s.median_us / 1000)
        parts.append(f'<line x1="{mx:.1f}" y1="{cy - 11}" x2="{mx:.1f}" y2="{cy + 11}" '
                     'stroke="#111" stroke-width="2.5"/>')  # fmt: skip
        note = " noisy" if s.noisy else ""
        parts.append(f'<text x="{width - right + 8}" y="{cy + 4}"{weight}>'
                     f"{ms(s.median_us)} ms{note}</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def op_types_svg(m: Measurement) -> str:
    """Horizontal bars: average ms per node type, slowest first."""
    rows = m.op_types
    if not rows:
        return ""
    left, right, row_h, width = 200, 170, 24, 1040
    plot_w = width - left - right
    height = row_h * len(rows) + 12
    top_ms = max(r.avg_ms for r in rows) or 1.0
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" {_FONT} font-size="12">']  # fmt: skip
    for i, r in enumerate(rows):
        y = 6 + i * row_h
        w = plot_w * r.avg_ms / top_ms
        binary = r.node_type.startswith("Lce")
        color = "#2f6db5" if binary else "#9aa7b4"
        parts.append(f'<text x="{left - 8}" y="{y + 15}" text-anchor="end">'
                     f"{escape(r.node_type)} ×{r.count}</text>")  # fmt: skip
        parts.append(f'<rect x="{left}" y="{y + 3}" width="{max(w, 1):.1f}" height="16" '
                     f'fill="{color}" rx="2"/>')  # fmt: skip
        parts.append(f'<text x="{left + max(w, 1) + 6:.1f}" y="{y + 15}">'
                     f"{r.avg_ms:.3f} ms · {r.percent:.1f} %</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def models_svg(result: BenchResult) -> str:
    """Each model's median at its fastest configuration and at the baseline."""
    summary = [s for s in result.summary() if s["measured"]]
    if len(summary) < 2:
        return ""
    left, right, row_h, width = 250, 200, 46, 1040
    plot_w = width - left - right
    height = row_h * len(summary) + 30
    top_us = max(max(s["baseline_median_us"], s["fastest_median_us"]) for s in summary)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" {_FONT} font-size="12">']  # fmt: skip
    first = summary[0]["fastest_median_us"]
    for i, s in enumerate(summary):
        y = 8 + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 22}" text-anchor="end" font-weight="600">'
                     f"{escape(s['model'])}</text>")  # fmt: skip
        for k, (key, color, label) in enumerate(
            [
                ("fastest_median_us", "#2f6db5", "fastest"),
                ("baseline_median_us", "#b8c2cc", "baseline"),
            ]
        ):
            w = plot_w * s[key] / top_us
            yy = y + k * 17
            parts.append(f'<rect x="{left}" y="{yy}" width="{max(w, 1):.1f}" height="14" '
                         f'fill="{color}" rx="2"/>')  # fmt: skip
            extra = f" · {s['fastest_median_us'] / first:.2f}× first model" if k == 0 and i else ""
            parts.append(f'<text x="{left + max(w, 1) + 6:.1f}" y="{yy + 11}">'
                         f"{label} {ms(s[key])} ms{extra}</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for c in row:
            cls = ' class="noisy"' if c.endswith("noisy") else ""
            cls = ' class="best"' if c.endswith("★") else cls
            cells.append(f"<td{cls}>{escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def render_html(result: BenchResult) -> str:
    """``bench.html``: the Markdown report's content plus the three plots."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>bnnconvert bench</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>bnnconvert bench</h1>"]  # fmt: skip
    if not result.complete:
        out.append(f'<p class="warn"><b>Incomplete:</b> {escape(result.problem or "")}. '
                   "The figures below are what was measured before that.</p>")  # fmt: skip
    runs = (
        f"{result.runs} timed runs"
        if result.runs
        else f"until every median was stable (stopped: {result.stop_reason or 'cut short'})"
    )
    meta = [
        f"<b>Device</b> {escape(describe_device(result))}",
        f"<b>Method</b> {escape(describe_method(result))}",
        f"<b>Runs</b> {escape(runs)}; {result.warmup} warm-up run(s); models and "
        "configurations interleaved run by run",
        f"<b>Time</b> {escape(result.started_at)} → {escape(result.finished_at or '–')}",
        f"CV above {NOISY_CV:.0%} is flagged noisy; ★ marks the fastest configuration.",
    ]
    out.append('<p class="meta">' + "<br>".join(meta) + "</p>")
    out.append("<h2>Fastest configuration</h2><ul>")
    for s in result.summary():
        if not s["measured"]:
            continue
        line = (
            f"<li><b>{escape(s['model'])}</b>: <b>{escape(s['fastest_config'])}</b> "
            f"{ms(s['fastest_median_us'])} ms"
        )
        if s["fastest_config"] != s["baseline_config"]:
            line += (
                f" — {escape(s['baseline_config'])} {ms(s['baseline_median_us'])} ms, "
                f"<b>{s['speedup_vs_baseline']:.2f}×</b> faster"
            )
        out.append(line + "</li>")
    out.append("</ul>")
    for i, model in enumerate(result.models):
        svg = distribution_svg(result, i)
        if svg:
            out.append(f"<h2>Latency distribution: {escape(model.name)}</h2>{svg}")
    comparison = models_svg(result)
    if comparison:
        out.append(f"<h2>Models compared</h2>{comparison}")
    for title, m in op_breakdown(result):
        out.append(f"<h2>Per-op time: {escape(title)}</h2>{op_types_svg(m)}")
    out.append("<h2>All configurations</h2>")
    out.append(_html_table(LATENCY_HEADER, latency_rows(result)))
    out.append("<h2>Models</h2>")
    out.append(
        _html_table(
            ["#", "model", "size", "sha256"],
            [
                [str(i), m.name, f"{m.size_bytes / 1024:.1f} KiB", m.sha256]
                for i, m in enumerate(result.models)
            ],
        )
    )
    if result.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes))
        out.append("</ul>")
    tools = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in result.tools.items())
    out.append(f'<p class="meta"><code>{tools}</code></p></body></html>')
    return "\n".join(out) + "\n"
