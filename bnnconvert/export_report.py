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
    """The ``--strict`` error if a layer marked binary stayed float, else None.

    It names each such layer with the codes of every reason the audit found for it.
    """
    stayed = report.stayed_float
    if not stayed:
        return None
    reasons: dict[str, list[str]] = {}
    for d in report.diagnostics:
        if d.severity == "error" and d.code not in reasons.setdefault(d.layer, []):
            reasons[d.layer].append(d.code)
    layers = ", ".join(
        f"{q.name} ({', '.join(reasons.get(q.name) or ['unknown'])})" for q in stayed
    )
    return CheckFailed(
        f"--strict: {len(stayed)} layer(s) marked binary did not become LceBconv2d: {layers}; "
        f"the model was written as {out / REJECTED_MODEL_NAME} (no {out / 'model.tflite'}), "
        f"reasons and fixes in {out / MARKDOWN_NAME}"
    )
