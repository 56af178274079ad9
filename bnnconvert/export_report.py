"""The ``--strict`` verdict of an export, and the names of its report files.

``export.md`` itself is rendered by :mod:`bnnconvert.reports.export_markdown`.
"""

from __future__ import annotations

from pathlib import Path

from bnnconvert.audit import AuditResult
from bnnconvert.errors import CheckFailed

MARKDOWN_NAME = "export.md"
REJECTED_MODEL_NAME = "model.rejected.tflite"


BINARY_BY_WEIGHTS = ("onnx-float-input",)
"""Finding codes of layers whose weights say binary though no layer marked them so."""


def strict_failure(report: AuditResult, out: Path) -> CheckFailed | None:
    """The ``--strict`` error if a layer marked binary stayed float, else None.

    It names each such layer with the codes of every reason the audit found for it.
    A model whose Keras layers the audit cannot see (``report.opaque``) is
    judged by its ops instead (:attr:`AuditResult.op_level_errors`).
    """
    if report.opaque:
        found = report.op_level_errors
        if not found:
            return None
        problem = (
            f"the audit cannot see this model's Keras layers ({report.opaque}), so its ops "
            f"were judged: {'; '.join(f'{d.code}: {d.message}' for d in found)}"
        )
    else:
        stayed = [q.name for q in report.stayed_float]
        by_weights = [d.layer for d in report.diagnostics if d.code in BINARY_BY_WEIGHTS]
        stayed += [name for name in dict.fromkeys(by_weights) if name not in stayed]
        if not stayed:
            return None
        reasons: dict[str, list[str]] = {}
        for d in report.diagnostics:
            if d.severity == "error" and d.code not in reasons.setdefault(d.layer, []):
                reasons[d.layer].append(d.code)
        layers = ", ".join(
            f"{name} ({', '.join(reasons.get(name) or ['unknown'])})" for name in stayed
        )
        problem = f"{len(stayed)} layer(s) marked binary did not become LceBconv2d: {layers}"
    return CheckFailed(
        f"--strict: {problem}; "
        f"the model was written as {out / REJECTED_MODEL_NAME} (no {out / 'model.tflite'}), "
        f"reasons and fixes in {out / MARKDOWN_NAME}"
    )
