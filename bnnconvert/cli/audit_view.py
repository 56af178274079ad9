"""The conversion audit as a short rich table for ``bnnconvert export``'s human output."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from bnnconvert.cli import output
from bnnconvert.reports.audit_markdown import describe_batch_norms, opaque_line
from bnnconvert.reports.inspect_text import describe_macs

_MAX_ROWS = 12


def print_audit_summary(audit: dict[str, Any]) -> None:
    """Quantized layers (problems first), findings in one line each, MACs by kind and the
    non-binary MAC leaders."""
    summary = audit["summary"]
    quantized = sorted(audit["quantized"], key=lambda q: (q["binary"], not q["marked_binary"]))
    reasons: dict[str, list[str]] = {}
    for d in audit["diagnostics"]:
        if d["severity"] == "error":
            reasons.setdefault(d["layer"], []).append(d["code"])
    if quantized:
        table = Table(title=None, box=None, pad_edge=False, header_style="bold")
        columns = ["layer", "became", "binary"] + (["why not"] if reasons else [])
        for column in columns:
            table.add_column(column)
        for q in quantized[:_MAX_ROWS]:
            verdict = "[green]yes[/]" if q["binary"] else "[red]no[/]"
            if not q["marked_binary"]:
                verdict = "not marked binary"  # no quantizers, or a first layer
            why = ", ".join(reasons.get(q["name"], []))
            row = [escape(q["name"]), ", ".join(q["became"]) or "–", verdict, why]
            table.add_row(*row[: len(columns)])
        if len(quantized) > _MAX_ROWS:
            table.add_row(f"... {len(quantized) - _MAX_ROWS} more")
        output.stdout.print(table)
    if summary["opaque"]:
        binary = f"{opaque_line(summary)}; {summary['binary_mac_share']:.1%} of MACs binary"
    else:
        binary = (
            f"{summary['became_binary']} of {summary['marked_binary']} layers marked binary, "
            f"{summary['binary_mac_share']:.1%} of MACs; "
            f"batch norms: {describe_batch_norms(summary)}"
        )
    output.stdout.print(
        f"  binary: {binary}\n  MACs:   {describe_macs(summary['macs'])}",
        highlight=False,
        markup=False,
    )
    infos: dict[str, int] = {}
    for d in audit["diagnostics"]:
        if d["severity"] != "error":
            infos[d["code"]] = infos.get(d["code"], 0) + 1
    if infos:
        listed = ", ".join(f"{code} ×{n}" for code, n in infos.items())
        output.stdout.print(f"  notes: {listed} (see export.md)", highlight=False)
    in_table = {q["name"] for q in quantized}
    others: dict[str, list[str]] = {}  # errors on layers the table does not show
    for d in audit["diagnostics"]:
        if d["severity"] == "error" and d["layer"] not in in_table:
            others.setdefault(d["code"], []).append(d["layer"])
    for code, layers in others.items():
        output.stdout.print(
            f"  [red]error[/]: {code} ({escape(', '.join(layers))}) (see export.md)",
            highlight=False,
        )
    leaders = audit["non_binary_mac_leaders"]
    if leaders:
        listed = ", ".join(f"{f['layer']} {f['kind']} {f['share']:.1%}" for f in leaders)
        output.stdout.print(
            f"  top non-binary layers by MACs: {listed}", highlight=False, markup=False
        )
