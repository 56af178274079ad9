"""``bnnconvert inspect``'s human output: a summary, then one compact table row per op."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table
from rich.text import Text

from bnnconvert.cli import output

if TYPE_CHECKING:
    from bnnconvert.inspect import InspectResult, OpInfo, TensorInfo

WIDTH = 120  # columns used off a terminal
_DTYPES = {
    "float32": "f32", "float16": "f16", "float64": "f64", "int4": "i4", "int8": "i8",
    "int16": "i16", "int32": "i32", "int64": "i64", "uint8": "u8", "uint16": "u16",
    "uint32": "u32", "uint64": "u64",
}  # fmt: skip
# Options left out when they hold the schema's default (the full set is in --json / --markdown).
_DEFAULTS: dict[str, Any] = {
    "fused_activation_function": "NONE",
    "pot_scale_int16": True,
    "quantized_bias_type": 0,
    "weights_format": 0,
    "pad_values": 0,
    "beta": 1.0,
}
_PAIRS = {  # (height, width) option names -> short label
    ("stride_h", "stride_w"): "stride",
    ("stride_height", "stride_width"): "stride",
    ("dilation_h_factor", "dilation_w_factor"): "dilation",
    ("dilation_height_factor", "dilation_width_factor"): "dilation",
    ("filter_height", "filter_width"): "pool",
}
_RENAMED = {"channels_in": "cin", "raw_custom_options_bytes": "custom bytes"}


def print_inspect(result: InspectResult) -> None:
    """Summary, weights, signatures, model and metadata entries, notes, then the per-op table."""
    from bnnconvert.reports.inspect_text import metadata_rows

    console = output.wide_stdout(WIDTH)
    console.print(output.cell(result.source, style="bold"))
    console.print(_summary(result))
    console.print()
    console.print(_weights(result))
    console.print()
    console.print(_signatures(result))
    for title, rows in (("model", result.model_info), ("metadata", metadata_rows(result))):
        if rows:
            console.print()
            console.print(_key_values(title, rows))
    for note in result.notes:
        console.print(Text.assemble(("note: ", "yellow"), output.visible(note)))
    console.print()
    console.print(_ops(result))


def _summary(result: InspectResult) -> Table:
    from bnnconvert.reports.inspect_text import describe_macs

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    grid.add_row(
        "size",
        f"{result.size_bytes:,} bytes ({_binary_size(result.size_bytes)}); float-equivalent "
        f"{result.float_equivalent_bytes:,} bytes ({_binary_size(result.float_equivalent_bytes)});"
        f" compression ratio {result.compression_ratio:.2f}×",
    )
    several = len(result.signatures) > 1
    grid.add_row(
        "MACs",
        describe_macs(result.macs)
        + (f" (all {len(result.signatures)} signatures; each below)" if several else ""),
    )
    where = f" in {result.subgraphs} subgraphs" if result.subgraphs > 1 else ""
    histogram = ", ".join(f"{name} {n}" for name, n in result.op_histogram.items())
    grid.add_row("ops", output.cell(f"{len(result.ops)}{where} ({histogram})"))
    return grid


def _weights(result: InspectResult) -> Table:
    """Weights by kind (binary, int8, fp16, float32, integer biases) and other constants."""
    from bnnconvert.inspect import BINARY_WEIGHTS, WeightGroup

    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("weights")
    for name in ("tensors", "parameters", "bytes", "of file"):
        table.add_column(name, justify="right")
    groups = {BINARY_WEIGHTS: WeightGroup(), **result.weights}
    groups["other constants"] = result.other_constants
    for name, g in groups.items():
        share = g.bytes / result.size_bytes if result.size_bytes else 0.0
        table.add_row(name, str(g.tensors), f"{g.parameters:,}", f"{g.bytes:,}", f"{share:.0%}")
    return table


def _signatures(result: InspectResult) -> Table:
    """Each signature (MACs when there are several), its inputs and outputs with quantization."""
    from bnnconvert.reports.inspect_text import signature_lines

    table = Table(box=None, pad_edge=False, header_style="bold", show_header=False)
    table.add_column(no_wrap=True, style="bold")
    table.add_column()
    for label, text in signature_lines(result):
        table.add_row(output.cell(label), output.cell(text))
    return table


def _key_values(title: str, rows: dict[str, str]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column(title, no_wrap=True)
    table.add_column("")
    for key, value in rows.items():
        table.add_row(output.cell(key), output.cell(value))
    return table


def _ops(result: InspectResult) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 0, 0, 1), pad_edge=False)
    table.add_column("#", justify="right", no_wrap=True)
    table.add_column("op", no_wrap=True)
    table.add_column("inputs → outputs", no_wrap=True, overflow="fold")
    table.add_column("constants", no_wrap=True)
    table.add_column("options")
    table.add_column("MACs", justify="right", no_wrap=True)
    for op in result.ops:
        number = f"{op.subgraph}.{op.index}" if result.subgraphs > 1 else str(op.index)
        table.add_row(
            number,
            output.cell(op.type, style="green" if op.mac_kind == "binary" else ""),
            output.cell(_flow(op)),
            output.cell(_constants(op)),
            output.cell(short_options(op.options)),
            _macs(op),
        )
    return table


def _binary_size(n: int) -> str:
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 2**10:.1f} KiB"


def _label(t: TensorInfo) -> str:
    """``1x32x32x1 f32``: the shape and an abbreviated dtype."""
    return f"{_shape(t)} {_dtype(t.dtype)}"


def _shape(t: TensorInfo) -> str:
    return "x".join(str(d) for d in t.shape) or "scalar"


def _dtype(name: str) -> str:
    return _DTYPES.get(name, name)


def _flow(op: OpInfo) -> str:
    """Computed inputs → outputs; the dtype written once when they all share it."""
    inputs = [t for t in op.inputs if t is not None and not t.constant]
    tensors = inputs + op.outputs
    if len({t.dtype for t in tensors}) == 1:
        dtype = _dtype(tensors[0].dtype)
        return f"{_shapes(inputs)} → {_shapes(op.outputs)} {dtype}"
    return f"{_labels(inputs)} → {_labels(op.outputs)}"


def _shapes(tensors: list[TensorInfo]) -> str:
    return ", ".join(_shape(t) for t in tensors) or "–"


def _labels(tensors: list[TensorInfo]) -> str:
    """Shapes then one dtype when the tensors share it, else each shape with its dtype."""
    if len({t.dtype for t in tensors}) == 1:
        return f"{_shapes(tensors)} {_dtype(tensors[0].dtype)}"
    return ", ".join(_label(t) for t in tensors) or "–"


def _constants(op: OpInfo) -> str:
    """The first constant input (the weights, for compute ops) and how many more there are."""
    constants = [t for t in op.inputs if t is not None and t.constant]
    if not constants:
        return ""
    more = f" +{len(constants) - 1}" if len(constants) > 1 else ""
    return _label(constants[0]) + more


def short_options(options: dict[str, Any]) -> str:
    """Options without their defaults, height/width pairs merged: ``SAME, stride 2, relu``."""
    parts: list[str] = []
    paired = {name for pair in _PAIRS for name in pair}
    for (h, w), label in _PAIRS.items():
        if h in options and w in options:
            hv, wv = options[h], options[w]
            if label == "pool":
                parts.append(f"pool {hv}x{wv}")
            elif (hv, wv) != (1, 1):
                parts.append(f"{label} {hv}" if hv == wv else f"{label} {hv}x{wv}")
    for key, value in options.items():
        if key in paired or _DEFAULTS.get(key, object()) == value or value is False:
            continue
        if key == "padding":
            parts.insert(0, str(value))
        elif key == "fused_activation_function":
            parts.append(str(value).lower())
        elif value is True:
            parts.append(key)
        else:
            parts.append(f"{_RENAMED.get(key, key)} {_value(value)}")
    return ", ".join(parts)


def _value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    return str(value)


def _macs(op: OpInfo) -> Text:
    if not op.mac_kind:
        return Text("")
    return Text(_si(op.macs), style="green" if op.mac_kind == "binary" else "")


def _si(n: int) -> str:
    """``9437184 -> "9.44M"``: three significant digits (``999_600 -> "1M"``, not ``"1e+03k"``)."""
    for factor, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if n >= factor - factor // 2000:
            return f"{n / factor:.3g}{suffix}"
    return str(n)
