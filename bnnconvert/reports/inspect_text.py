"""``inspect``'s text: the Markdown report and the rows the terminal view shares with it.

Renders an :class:`bnnconvert.inspect.InspectResult`; the data module never
imports this one.
"""

from __future__ import annotations

import json
from typing import Any

from bnnconvert import macs, metadata, tflite_metadata
from bnnconvert.inspect import (
    BINARY_WEIGHTS,
    InspectResult,
    TensorInfo,
    WeightGroup,
)


def describe_macs(by_kind: dict[str, int]) -> str:
    """``7,962,624 binary, 124,416 float; binary share 98.5%`` (int8/int16 only when present)."""
    parts = [
        f"{by_kind.get(kind, 0):,} {kind}"
        for kind in macs.KINDS
        if kind in ("binary", "float") or by_kind.get(kind)
    ]
    return f"{', '.join(parts)}; binary share {macs.binary_share(by_kind):.1%}"


def metadata_rows(result: InspectResult, limit: int = 100) -> dict[str, str]:
    """One display line per metadata entry (the views' short form; ``--json`` has all of it)."""
    rows = {}
    for name, value in result.metadata.items():
        if name == metadata.NAME and isinstance(value, dict) and result.model_info:
            rows[name] = "bnnconvert JSON (summarised under model; in full with --json)"
        elif name == tflite_metadata.NAME and isinstance(value, dict):
            rows[name] = tflite_metadata.describe(value)
        elif name == "associated_files" and isinstance(value, list):
            rows["associated files"] = ", ".join(value)
        elif isinstance(value, dict) and set(value) == {"undecoded_bytes"}:
            rows[name] = f"<{value['undecoded_bytes']} bytes>"
        elif isinstance(value, str) and not value.strip():
            # e.g. min_runtime_version when the converter could not tell the version
            rows[name] = "not recorded (the entry is empty)"
        else:
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            rows[name] = text if len(text) <= limit else text[: limit - 3] + "..."
    return rows


def tensor_text(t: TensorInfo) -> str:
    """``1x32x32x3 int8 (scale 0.00392, zero point -128)``: shape, dtype and quantization."""
    shape = "x".join(str(d) for d in t.shape) or "scalar"
    quant = f" ({t.quantization.describe()})" if t.quantization else ""
    return f"{shape} {t.dtype}{quant}"


def signature_lines(result: InspectResult) -> list[tuple[str, str]]:
    """(label, text) rows describing each signature, its MACs, inputs and outputs."""
    rows: list[tuple[str, str]] = []
    several = len(result.signatures) > 1
    for sig in result.signatures:
        name = f"signature {sig.key!r}" if sig.key else "inputs and outputs"
        where = f" (subgraph {sig.subgraph})" if result.subgraphs > 1 else ""
        rows.append((name + where, f"MACs {describe_macs(sig.macs)}" if several else ""))
        for role, tensors in (("input", sig.inputs), ("output", sig.outputs)):
            for key, t in tensors.items():
                rows.append((f"  {role} {key}", tensor_text(t)))
    return rows


def _tensor_cell(t: TensorInfo | None) -> str:
    if t is None:
        return "–"
    shape = "x".join(str(d) for d in t.shape) or "scalar"
    quant = f" [{t.quantization.describe()}]" if t.quantization else ""
    return f"{t.index}:{shape} {t.dtype}{' (const)' if t.constant else ''}{quant}"


def _fmt_options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in options.items())


def _cell(text: str) -> str:
    return text.replace("|", "/")


def render_markdown(result: InspectResult) -> str:
    """The inspect report as Markdown: summary, weights, signatures, metadata, one row per op."""
    where = (
        f" (all {len(result.signatures)} signatures together; each below)"
        if len(result.signatures) > 1
        else ""
    )
    lines = [
        f"# {result.source}",
        "",
        f"- size: {result.size_bytes:,} bytes; float-equivalent {result.float_equivalent_bytes:,} "
        f"bytes; compression ratio {result.compression_ratio:.2f}x",
        f"- MACs{where}: {describe_macs(result.macs)}",
        "- ops: " + ", ".join(f"{k} {v}" for k, v in result.op_histogram.items()),
        "",
        "| weights | tensors | parameters | bytes |",
        "|---|---:|---:|---:|",
    ]
    groups = {BINARY_WEIGHTS: WeightGroup(), **result.weights}
    groups["other constants"] = result.other_constants
    for name, g in groups.items():
        lines.append(f"| {name} | {g.tensors} | {g.parameters:,} | {g.bytes:,} |")
    lines += ["", "| signature | |", "|---|---|"]
    lines += [f"| {_cell(k.strip())} | {_cell(v)} |" for k, v in signature_lines(result)]
    if result.model_info:
        lines += ["", "| model | |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in result.model_info.items()]
    rows = metadata_rows(result)
    if rows:
        lines += ["", "| metadata | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in rows.items()]
    lines += [f"\nnote: {note}" for note in result.notes]
    lines += ["", "| # | op | inputs | outputs | options | MACs |", "|---:|---|---|---|---|---:|"]
    for op in result.ops:
        op_macs = f"{op.macs:,} {op.mac_kind}" if op.mac_kind else ""
        number = f"{op.subgraph}.{op.index}" if result.subgraphs > 1 else str(op.index)
        lines.append(
            f"| {number} | {op.type} | {'<br>'.join(_tensor_cell(t) for t in op.inputs)} "
            f"| {'<br>'.join(_tensor_cell(t) for t in op.outputs)} "
            f"| {_fmt_options(op.options)} | {op_macs} |"
        )
    return "\n".join(lines) + "\n"
