"""Render a :class:`BenchResult` as one self-contained HTML page with inline SVG plots.

No scripts, fonts or stylesheets are fetched: the page opens offline. Plots:
latency distribution per configuration (every sample, p10–p90 band, median),
per-op time by node type, and the models side by side.
"""

from __future__ import annotations

import math
from html import escape

from bnnconvert.bench.report_md import (
    describe_device,
    describe_method,
    describe_runs,
    fastest_lines,
    latency_table,
    legend,
    ms_format,
    op_breakdown,
)
from bnnconvert.bench.result import BenchResult, Measurement

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;
max-width:1250px;color:#1d232a;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;
border-bottom:1px solid #dde3ea;padding-bottom:.2em}
table{border-collapse:collapse;font-size:13px;margin:.5em 0}
td,th{padding:3px 8px;border-bottom:1px solid #e7ebf0;text-align:right;white-space:nowrap}
th{white-space:normal;vertical-align:bottom}
.l{text-align:left}.scroll{overflow-x:auto}
th{background:#f4f6f9}.meta{color:#4a5560}.noisy{color:#b35900}
.warn{background:#fff3e0;border-left:4px solid #e67e22;padding:.6em 1em}
.best{font-weight:600}svg{display:block;margin:.5em 0}
.legend{background:#f4f6f9;padding:.5em 1em;font-size:13px}.legend ul{margin:.2em 0}
code{font-size:12px;color:#4a5560}
"""
_CHAR_PX = 7.2  # average width of a 12 px system-ui character, for label margins
_PALETTE = ["#2f6db5", "#d9622b", "#3a9a5b", "#8e4fb5", "#b5952f", "#2fa3b5", "#b52f6d"]
_FONT = 'font-family="system-ui,sans-serif"'


def _nice_ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        ticks = []
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            ticks += [m * 10**e for m in (1, 2, 5) if lo <= m * 10**e <= hi]
        return ticks or [lo, hi]
    step = 10 ** math.floor(math.log10((hi - lo) or hi or 1)) / 10
    for m in (1, 2, 5, 10, 20, 50):  # the finest step that gives at most 6 ticks
        if (hi - lo) / (step * m) <= 6:
            step *= m
            break
    start = math.ceil(lo / step) * step
    return [start + k * step for k in range(int((hi - start) / step) + 1)]


def _fmt_ms(v: float) -> str:
    return f"{v:.3g}"


def _label_margin(labels: list[str], least: int = 120, most: int = 460) -> int:
    """Left margin (px) wide enough for the longest label, within [least, most]."""
    longest = max((len(label) for label in labels), default=0)
    return int(min(most, max(least, longest * _CHAR_PX + 24)))


def _fit(label: str, margin: int) -> str:
    """``label`` shortened in the middle with … if it cannot fit in ``margin`` px."""
    room = int(margin / _CHAR_PX)
    if len(label) <= room:
        return label
    keep = max(4, room - 1)
    return label[: keep // 2] + "…" + label[len(label) - (keep - keep // 2) :]


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
    fmt = ms_format(result)
    left = _label_margin([m.config.label + " ★" for m in measured])
    right, row_h, top = 130, 30, 14
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
        label = m.config.label + (" ★" if m is best and len(measured) > 1 else "")
        parts.append(f'<text x="{left - 10}" y="{cy + 4}" text-anchor="end"{weight}>'
                     f"<title>{escape(label)}</title>"
                     f"{escape(_fit(label, left))}</text>")  # fmt: skip
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
        note = ' <tspan fill="#b35900">noisy</tspan>' if s.noisy else ""
        parts.append(f'<text x="{width - right + 8}" y="{cy + 4}"{weight}>'
                     f"{fmt(s.median_us)} ms{note}</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def op_types_svg(m: Measurement) -> str:
    """Horizontal bars: average ms per node type, slowest first."""
    rows = m.op_types
    if not rows:
        return ""
    labels = [f"{r.node_type} ×{r.count}" for r in rows]
    left = _label_margin(labels, least=160)
    right, row_h, width = 170, 24, 1040
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
                     f"{escape(_fit(labels[i], left))}</text>")  # fmt: skip
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
    fmt = ms_format(result)
    left = _label_margin([s["model"] for s in summary], least=160)
    texts = []
    for i, s in enumerate(summary):
        speedup = s["speedup_vs_first_model"]
        extra = f" · speedup {speedup:.2f}× vs first model" if i and speedup else ""
        texts.append((f"fastest {fmt(s['fastest_median_us'])} ms{extra}",
                      f"baseline {fmt(s['baseline_median_us'])} ms"))  # fmt: skip
    right = int(max(len(t) for pair in texts for t in pair) * _CHAR_PX + 16)
    row_h, width = 46, 1040
    plot_w = width - left - right
    height = row_h * len(summary) + 30
    top_us = max(max(s["baseline_median_us"], s["fastest_median_us"]) for s in summary)
    parts = [f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" {_FONT} font-size="12">']  # fmt: skip
    for i, s in enumerate(summary):
        y = 8 + i * row_h
        parts.append(f'<text x="{left - 8}" y="{y + 22}" text-anchor="end" font-weight="600">'
                     f"<title>{escape(s['model'])}</title>"
                     f"{escape(_fit(s['model'], left))}</text>")  # fmt: skip
        for k, (key, color) in enumerate(
            [("fastest_median_us", "#2f6db5"), ("baseline_median_us", "#b8c2cc")]
        ):
            w = plot_w * s[key] / top_us
            yy = y + k * 17
            parts.append(f'<rect x="{left}" y="{yy}" width="{max(w, 1):.1f}" height="14" '
                         f'fill="{color}" rx="2"/>')  # fmt: skip
            parts.append(f'<text x="{left + max(w, 1) + 6:.1f}" y="{yy + 11}">'
                         f"{escape(texts[i][k])}</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def _html_table(header: list[str], rows: list[list[str]], left_columns: int) -> str:
    """A table; the first ``left_columns`` columns (names) left-aligned, numbers right."""
    left = ' class="l"'
    head = "".join(
        f"<th{left if k < left_columns else ''}>{escape(h)}</th>" for k, h in enumerate(header)
    )
    body = []
    for row in rows:
        cells = []
        for k, c in enumerate(row):
            classes = ["l"] if k < left_columns else []
            classes += ["noisy"] if c.endswith("noisy") else []
            classes += ["best"] if c.endswith("★") else []
            attr = f' class="{" ".join(classes)}"' if classes else ""
            cells.append(f"<td{attr}>{escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def render_html(result: BenchResult) -> str:
    """``bench.html``: the Markdown report's content, a legend and the plots."""
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>bnnconvert bench</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>bnnconvert bench</h1>"]  # fmt: skip
    if not result.complete:
        out.append(f'<p class="warn"><b>Incomplete:</b> {escape(result.problem or "")}. '
                   "The figures below are what was measured before that.</p>")  # fmt: skip
    meta = [
        f"<b>Device</b> {escape(describe_device(result))}",
        f"<b>Method</b> {escape(describe_method(result))}",
        f"<b>Runs</b> {escape(describe_runs(result))}",
        f"<b>Time</b> {escape(result.started_at)} → {escape(result.finished_at or '–')}",
    ]
    out.append('<p class="meta">' + "<br>".join(meta) + "</p>")
    out.append('<div class="legend"><b>How to read this page</b><ul>')
    out += [f"<li>{escape(item)}</li>" for item in legend(result)]
    out.append(
        "<li>plots: each dot is one timed run, the shaded band spans p10–p90, "
        "the black tick is the median</li></ul></div>"
    )
    heading = "Fastest configuration" if len(result.configs) > 1 else "Median"
    out.append(f"<h2>{heading}</h2><ul>")
    for line, caveat in fastest_lines(result):
        note = f' <span class="noisy">({escape(caveat)})</span>' if caveat else ""
        out.append(f"<li>{escape(line)}{note}</li>")
    out.append("</ul>")
    for i, model in enumerate(result.models):
        svg = distribution_svg(result, i)
        if svg:
            out.append(f"<h2>Latency distribution: {escape(model.name)}</h2>{svg}")
    comparison = models_svg(result)
    if comparison:
        out.append(
            f'<h2>Models compared</h2><p class="meta">Each model\'s median at its fastest '
            f"configuration and at the baseline ({escape(result.baseline_label)}).</p>"
            f"{comparison}"
        )
    for title, m in op_breakdown(result):
        out.append(f"<h2>Per-op time: {escape(title)}</h2>{op_types_svg(m)}")
    out.append("<h2>All configurations</h2>")
    header, rows = latency_table(result)
    out.append(_html_table(header, rows, left_columns=2 if len(result.models) > 1 else 1))
    out.append("<h2>Models</h2>")
    out.append(
        _html_table(
            ["#", "model", "size", "sha256"],
            [
                [str(i), m.name, f"{m.size_bytes / 1024:.1f} KiB", m.sha256]
                for i, m in enumerate(result.models)
            ],
            left_columns=2,
        )
    )
    if result.notes:
        out.append("<h2>Notes</h2><ul>" + "".join(f"<li>{escape(n)}</li>" for n in result.notes))
        out.append("</ul>")
    tools = ", ".join(f"{escape(k)} {escape(str(v))}" for k, v in result.tools.items())
    out.append(f'<p class="meta"><code>{tools}</code></p></body></html>')
    return "\n".join(out) + "\n"
