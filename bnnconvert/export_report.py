"""The ``--strict`` verdict of an export, and the names of its report files.

``export.md`` itself is rendered by :mod:`bnnconvert.reports.export_markdown`.
"""

from __future__ import annotations

from pathlib import Path

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
