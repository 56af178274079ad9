"""``export.md``: the export report for people, rendered from an :class:`ExportResult`.

It says everything ``export.json`` says except the creation time and the
directory paths, so that equal exports give equal files.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from bnnconvert import metadata

if TYPE_CHECKING:
    from bnnconvert.export import ExportResult


def _size(n: int) -> str:
    return f"{n:,} bytes ({n / 1024:.1f} KiB)"


def _signed_kib(n: int) -> str:
    """Bytes a pass saved, in words: ``saved 40.7 KiB`` / ``added 0.1 KiB`` / ``0``."""
    if n == 0:
        return "0"
    return f"{'saved' if n > 0 else 'added'} {abs(n) / 1024:.1f} KiB"


def _signature_rows(tensors: list[dict[str, Any]]) -> list[str]:
    rows = []
    for t in tensors:
        quant = t.get("quantization")
        q = f"scale {quant['scale']}, zero point {quant['zero_point']}" if quant else "–"
        rows.append(f"| {t['name']} | {t['shape']} | {t['dtype']} | {q} |")
    return rows


def _without_directory(source: str) -> str:
    """A data file's name without its directory (the report holds no paths)."""
    return Path(source).name if source.startswith("/") else source


def _parity_lines(parity: dict[str, Any]) -> list[str]:
    verdict = parity.get("verdict", "passed" if parity.get("passed") else "failed")
    if parity.get("lossy"):
        verdict += " (lossy export: judged by top-1 agreement, accuracy and each layer)"
    lines = [
        f"- verdict: {verdict}",
        f"- data: {parity['samples']} samples of {_without_directory(parity['data'])}",
    ]
    if parity.get("top1_agreement") is not None:
        lines.append(f"- top-1 agreement: {parity['top1_agreement']:.1%}")
    lines.append(
        f"- max abs error: {parity['max_abs_error']:.3g}; min cosine {parity['cosine_min']:.6f}"
    )
    lines += [f"- failure: {f}" for f in parity.get("failures", [])]
    lines += [f"- note: {n}" for n in parity.get("notes", [])]
    lines += [f"- not checked: {n}" for n in parity.get("unchecked", [])]
    return lines


def render(result: ExportResult) -> str:
    """The whole export report as Markdown.

    Sections: summary, signature, parity check, passes, metadata, ops, timings,
    versions, then the audit (:func:`bnnconvert.reports.audit_markdown.render`).
    """
    from bnnconvert.reports import audit_markdown

    report = result.to_dict()
    target = result.target
    ckpt = result.checkpoint
    summary = report["audit"]["summary"]
    lines = [
        f"# Export of {ckpt.get('model_name', 'model')} for {target.name}",
        "",
        f"- model file: {Path(result.model_path).name}",
        f"- checkpoint: {Path(str(ckpt.get('path', ''))).name} ({ckpt.get('format', '?')}, "
        f"{ckpt.get('parameters', 0):,} parameters)",
    ]
    if result.strict_passed is not None:
        verdict = "passed" if result.strict_passed else "**failed**"
        by_ops = " (judged by the ops: the audit cannot see the Keras layers)"
        lines.append(f"- --strict: {verdict}{by_ops if summary['opaque'] else ''}")
    lines += [
        f"- target: {target.name} (LCE {target.lce_target} back end): {target.summary}",
        f"- size: {_size(result.model_bytes)}; LCE's converter wrote "
        f"{_size(result.lce_model_bytes)}",
        f"- sha256: `{result.sha256}`",
        (
            f"- binary layers: {audit_markdown.opaque_line(summary)}"
            if summary["opaque"]
            else f"- binary layers: {summary['became_binary']} of {summary['marked_binary']} "
            "marked binary"
        )
        + f"; binary share of MACs {summary['binary_mac_share']:.1%}",
        "",
        "## Signature",
        "",
        "| tensor | shape | dtype | quantization |",
        "|---|---|---|---|",
    ]
    lines += ["| **inputs** | | | |", *_signature_rows(result.inputs)]
    lines += ["| **outputs** | | | |", *_signature_rows(result.outputs)]
    lines += ["", "## Parity check", ""]
    parity = report.get("validation")
    lines += _parity_lines(parity) if parity else ["- skipped (--no-validate)"]
    lines += [
        "",
        "## Passes",
        "",
        "| pass | rewrites | ops removed | ops added | size | left alone |",
        "|---|---:|---:|---:|---|---|",
    ]
    for p in report["passes"]:
        skipped = ", ".join(f"{k} ×{v}" for k, v in p["skipped"].items()) or "–"
        lines.append(
            f"| {p['name']} | {p['rewrites']} | {p['ops_removed']} | {p['ops_added']} | "
            f"{_signed_kib(p['bytes_saved'])} | {skipped} |"
        )
    if not report["passes"]:
        lines.append("| none (LCE's output as converted) | | | | | |")
    lines += ["", "## Metadata", ""]
    embedded = result.embedded_metadata
    if embedded:
        lines += [f"- {key}: {value}" for key, value in metadata.summary(embedded).items()]
    else:
        lines.append("- none embedded")
    lines += ["", "## Ops", "", "| op | count |", "|---|---:|"]
    lines += [f"| {name} | {count} |" for name, count in result.op_counts.items()]
    lines += [
        "",
        "## Timings",
        "",
        f"- total: {result.total_seconds:.1f} s (LCE conversion {result.conversion_seconds:.1f} s)",
    ]
    lines += [f"- {name}: {sec:.2f} s" for name, sec in result.step_seconds.items()]
    lines += ["", "## Versions", ""]
    lines += [f"- {name}: {version}" for name, version in result.versions.items()]
    lines += ["", audit_markdown.render(result.audit).rstrip("\n")]
    return "\n".join(lines) + "\n"
