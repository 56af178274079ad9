"""Markdown rendering of an :class:`bnnconvert.audit.AuditResult` (data lives in audit.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bnnconvert.reports.inspect_text import describe_macs

if TYPE_CHECKING:
    from bnnconvert.audit import AuditResult, Diagnostic


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _grouped(diagnostics: list[Diagnostic]) -> list[tuple[Diagnostic, list[str]]]:
    """Equal findings (same code, message and fix) on several layers, in first-seen order."""
    groups: dict[tuple[str, str, str, str], tuple[Diagnostic, list[str]]] = {}
    for d in diagnostics:
        key = (d.severity, d.code, d.message, d.fix)
        groups.setdefault(key, (d, []))[1].append(d.layer)
    order = {"error": 0, "info": 1}
    return sorted(groups.values(), key=lambda g: order.get(g[0].severity, 2))


def describe_batch_norms(summary: dict[str, Any]) -> str:
    """``12 (9 folded into sign thresholds, 3 fused by LCE)``: what became of them.

    Arguments:
        summary: ``AuditResult.to_dict()["summary"]``.
    """
    fused, folded = summary["batch_norms_fused"], summary["batch_norms_folded"]
    left = summary["batch_norms"] - fused - folded
    parts = [
        f"{folded} folded into sign thresholds" if folded else "",
        f"{fused} fused by LCE" if fused else "",
        f"{left} left as float ops" if left else "",
    ]
    listed = ", ".join(p for p in parts if p)
    return f"{summary['batch_norms']} ({listed})" if listed else "none"


def opaque_line(summary: dict[str, Any]) -> str:
    """``the audit cannot see this model's Keras layers (...); per op: 3 LceBconv2d, 1 CONV_2D``.

    Arguments:
        summary: ``AuditResult.to_dict()["summary"]`` of an audit with ``opaque`` set.
    """
    per_op = ", ".join(f"{n} {op}" for op, n in summary["ops_with_macs"].items()) or "none"
    return f"the audit cannot see this model's Keras layers ({summary['opaque']}); per op: {per_op}"


def render(result: AuditResult) -> str:
    """The audit as Markdown: summary, binary layers, findings, batch norms, MACs, mapping."""
    summary = result.to_dict()["summary"]
    stayed = summary["stayed_float"]
    quantized_line = (
        f"- {opaque_line(summary)}"
        if summary["opaque"]
        else f"- quantized layers: {summary['quantized_layers']}"
        + (
            " (" + ", ".join(f"{c} {n}" for c, n in summary["quantized_by_class"].items()) + ")"
            if summary["quantized_by_class"]
            else ""
        )
        + f", marked binary "
        f"{summary['marked_binary']}, became LceBconv2d {summary['became_binary']}"
        + (f"; **stayed float: {', '.join(stayed)}**" if stayed else "")
    )
    lines = [
        f"## Conversion audit: {result.model_name}",
        "",
        quantized_line,
        f"- batch norms: {describe_batch_norms(summary)}",
        f"- MACs: {describe_macs(result.macs)}",
        "",
    ]
    if result.quantized:
        lines += [
            "### Quantized layers",
            "",
            "| layer | class | input quantizer | kernel quantizer | became | binary |",
            "|---|---|---|---|---|---|",
        ]
        for q in result.quantized:
            if q.binary:
                verdict = "yes"
            elif q.quantizers_lost:
                verdict = "**no** (quantizers lost in saving)"
            else:
                verdict = "**no**" if q.marked_binary else "no (not marked binary)"
            lines.append(
                f"| {_cell(q.name)} | {q.class_name} | {q.input_quantizer or '–'} "
                f"| {q.kernel_quantizer or '–'} | {', '.join(q.became) or '–'} | {verdict} |"
            )
        lines.append("")
    lines += ["### Findings", ""]
    if not result.diagnostics:
        lines += ["None.", ""]
    for d, layers in _grouped(result.diagnostics):
        lines.append(f"- **{d.severity}** `{d.code}` ({', '.join(layers)}): {d.message}")
        if d.fix:
            lines.append(f"  - fix: {d.fix}")
    if result.diagnostics:
        lines.append("")
    if result.batch_norms:
        lines += ["### Batch norms", "", "| batch norm | outcome | detail |", "|---|---|---|"]
        lines += [
            f"| {_cell(b.name)} | {b.outcome} | {_cell(b.detail)} |" for b in result.batch_norms
        ]
        lines.append("")
    if result.non_binary_mac_leaders:
        lines += [
            "### Non-binary layers by MACs",
            "",
            "| layer | kind | ops | MACs | share of all MACs |",
            "|---|---|---|---:|---:|",
        ]
        lines += [
            f"| {_cell(f.layer)} | {f.kind} | {', '.join(f.op_types)} "
            f"| {f.macs:,} | {f.share:.1%} |"
            for f in result.non_binary_mac_leaders
        ]
        lines.append("")
    lines += [
        "### Layers and the ops they became",
        "",
        "Mapped by *name* (tensor names), *structure* (inferred from the graph: "
        "less certain) or *none*. Op numbers index the flatbuffer's operators.",
        "",
        "| layer | class | ops | mapped by | note |",
        "|---|---|---|---|---|",
    ]
    for m in result.layers:
        ops = ", ".join(f"{i} {t}" for i, t in zip(m.ops, m.op_types, strict=True)) or "–"
        lines.append(
            f"| {_cell(m.name)} | {m.class_name} | {ops} | {m.mapped_by} | {_cell(m.note)} |"
        )
    if result.unmapped_ops:
        listed = ", ".join(f"{o['index']} {o['type']}" for o in result.unmapped_ops)
        lines += ["", f"Ops not traced to any layer: {listed}."]
    return "\n".join(lines) + "\n"
