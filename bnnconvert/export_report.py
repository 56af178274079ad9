"""``export.md`` (the export report for people) and the ``--strict`` verdict.

The Markdown is rendered from the same dict that is written as
``export.json``, so the two never disagree; it leaves out the creation time
and directory paths so that equal exports give equal files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bnnconvert.audit import AuditResult
from bnnconvert.errors import CheckFailed

MARKDOWN_NAME = "export.md"
REJECTED_MODEL_NAME = "model.rejected.tflite"


def strict_failure(report: AuditResult, out: Path) -> CheckFailed | None:
    """The ``--strict`` error if a layer marked binary stayed float, else None."""
    stayed = report.stayed_float
    if not stayed:
        return None
    first_reason = {d.layer: d.code for d in reversed(report.diagnostics) if d.severity == "error"}
    layers = ", ".join(f"{q.name} ({first_reason.get(q.name, 'unknown')})" for q in stayed)
    return CheckFailed(
        f"--strict: {len(stayed)} layer(s) marked binary did not become LceBconv2d: {layers}; "
        f"the model was written as {out / REJECTED_MODEL_NAME} (no {out / 'model.tflite'}), "
        f"reasons and fixes in {out / MARKDOWN_NAME}"
    )


def _kib(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:.1f} KiB)"


def render_markdown(report: dict[str, Any], audit_markdown: str) -> str:
    """The whole export report as Markdown: what, for which target, sizes, ops, audit.

    Arguments:
        report: the ``export.json`` dict (``ExportResult.to_dict()``).
        audit_markdown: :meth:`AuditResult.to_markdown` of the same export.
    """
    target = report.get("target", {})
    ckpt = report.get("checkpoint", {})
    audit = report.get("audit", {}).get("summary", {})
    lines = [
        f"# Export of {ckpt.get('model_name', 'model')} for {target.get('name', '?')}",
        "",
        f"- model file: {Path(str(report.get('model', ''))).name}",
    ]
    if report.get("strict") is not None:
        verdict = "passed" if report["strict"]["passed"] else "**failed**"
        lines.append(f"- --strict: {verdict}")
    lines += [
        f"- target: {target.get('name', '?')} (LCE {target.get('lce_target', '?')} back end): "
        f"{target.get('summary', '')}",
        f"- size: {_kib(report.get('sizes', {}).get('model_bytes', 0))}",
        f"- sha256: `{report.get('sha256', '')}`",
    ]
    if audit:
        lines.append(
            f"- binary layers: {audit['became_binary']} of {audit['marked_binary']} marked binary; "
            f"binary share of MACs {audit['binary_mac_share']:.1%}"
        )
    versions = report.get("versions", {})
    if versions:
        lines.append("- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    ops = report.get("op_counts", {})
    lines += ["", "## Ops", "", "| op | count |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in ops.items()]
    lines += ["", audit_markdown.rstrip("\n")]
    return "\n".join(lines) + "\n"
