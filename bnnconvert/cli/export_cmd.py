"""``bnnconvert export CKPT --target arm64``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bnnconvert.cli import output
from bnnconvert.cli.trust_options import CustomObjects, TrustCheckpoint, warn_if_trusted

if TYPE_CHECKING:
    from bnnconvert.passes import PassStats


def export(
    ckpt: Annotated[
        Path,
        typer.Argument(help="Checkpoint: SavedModel dir, .keras/.h5 file, or TF checkpoint dir."),
    ],
    target: Annotated[
        str, typer.Option("--target", "-t", help="arm64, armv7, x86_64 or xcore (see README).")
    ] = "arm64",
    out: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Output directory (default: exports/NAME-TARGET)."),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option("--input-shape", help="H,W,C to convert for, e.g. 224,224,3.")
    ] = None,
    arch: Annotated[
        str | None,
        typer.Option("--arch", help="Architecture of a weights-only .h5, e.g. binarydensenet28."),
    ] = None,
    num_classes: Annotated[
        int | None,
        typer.Option("--num-classes", help="Classes for --arch (default: read from the weights)."),
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option("--labels", help="Label file to embed (default: labels.txt beside CKPT)."),
    ] = None,
    preprocessing: Annotated[
        str | None,
        typer.Option(
            "--preprocessing",
            help="Preprocessing to embed: a preset such as imagenet and/or key=value;... "
            "(default: preprocessing.txt beside CKPT). Presets and keys: docs/metadata.md.",
        ),
    ] = None,
    no_optimize: Annotated[
        bool, typer.Option("--no-optimize", help="Write LCE's converter output unchanged.")
    ] = False,
    no_rewrite: Annotated[
        bool,
        typer.Option(
            "--no-rewrite",
            help="Keep binary QuantDense layers as they are (by default each is rebuilt, "
            "exactly, as a 1x1 QuantConv2D so LCE makes it LceBconv2d).",
        ),
    ] = False,
    float_weights: Annotated[
        str,
        typer.Option(
            "--float-weights",
            help="Storage of float conv/dense weights: fp32, fp16 (DEQUANTIZE) or int8 "
            "(per-channel, hybrid kernels). Lossy unless fp32.",
        ),
    ] = "fp32",
    int8_activations: Annotated[
        bool,
        typer.Option(
            "--int8-activations",
            help="Run the float layers in int8 with ranges calibrated on --calibration "
            "(default: the test split beside CKPT). Lossy.",
        ),
    ] = False,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help="Calibration inputs: .npz with an array 'x'."),
    ] = None,
    input_type: Annotated[
        str,
        typer.Option(
            "--input-type",
            help="float32 or int8 input tensor (int8: needs --int8-activations or a model "
            "with its own fake-quant; scale and zero point are in the metadata).",
        ),
    ] = "float32",
    output_type: Annotated[
        str,
        typer.Option("--output-type", help="float32 or int8 output tensor (as --input-type)."),
    ] = "float32",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    no_validate: Annotated[
        bool, typer.Option("--no-validate", help="Skip the quick parity check (8 samples).")
    ] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if a layer marked binary did not become a binary op "
            "(reports are written; the model as model.rejected.tflite).",
        ),
    ] = False,
    trust_checkpoint: TrustCheckpoint = False,
    custom_objects: CustomObjects = None,
) -> None:
    """Convert a trained Larq checkpoint into an LCE flatbuffer and a report."""
    from bnnconvert.cli.audit_view import print_audit_summary
    from bnnconvert.convert import parse_input_shape
    from bnnconvert.errors import CheckFailed
    from bnnconvert.export import export as run_export
    from bnnconvert.validate import NOT_CHECKED, RANDOM_INPUTS

    shape = parse_input_shape(input_shape) if input_shape else None
    warn_if_trusted(trust_checkpoint)
    try:
        with output.progress("Starting") as step:
            result = run_export(
                ckpt,
                target=target,
                output_dir=out,
                input_shape=shape,
                arch=arch,
                num_classes=num_classes,
                progress=step,
                strict=strict,
                optimize=not no_optimize,
                float_weights=float_weights,
                int8_activations=int8_activations,
                calibration=calibration,
                rewrite=not no_rewrite,
                labels=labels,
                preprocessing=preprocessing,
                validate=not no_validate,
                trust_checkpoint=trust_checkpoint,
                custom_objects=custom_objects,
                input_type=input_type,
                output_type=output_type,
            )
    except CheckFailed as failed:  # --strict: the reports were written all the same
        if as_json and failed.result is not None:
            output.print_json(failed.result.to_dict())
        raise
    if as_json:
        output.print_json(result.to_dict())
        return
    ops = ", ".join(f"{name} {count}" for name, count in result.op_counts.items())
    output.stdout.print(
        f"Exported {result.checkpoint['model_name']} for {result.target.name}: "
        f"{result.model_bytes / 1024:.1f} KiB in {result.total_seconds:.1f} s "
        f"(LCE conversion {result.conversion_seconds:.1f} s)\n"
        f"  ops: {ops}\n"
        f"  passes: {_passes_line(result.passes)}",
        highlight=False,
    )
    for entry in result.passes:
        if "note" in entry.details:
            output.stdout.print(f"  note:   {entry.name}: {entry.details['note']}", highlight=False)
    if result.quantization is not None:
        output.stdout.print(f"  int8:   {_int8_line(result.quantization)}", highlight=False)
    print_audit_summary(result.audit.to_dict())
    if result.parity is not None:
        parity = result.parity_dict()
        verdict = parity["verdict"] + (" (lossy export)" if parity["lossy"] else "")
        if not parity["passed"]:
            verdict = f"FAILED: {'; '.join(parity['failures'])} (run bnnconvert validate --layers)"
        top1 = parity["top1_agreement"]
        figures = f", top-1 agreement {top1:.0%}" if top1 is not None else ""
        random = " (random inputs)" if parity["data"] == RANDOM_INPUTS else ""
        if parity["verdict"] != NOT_CHECKED:  # else the line below says why
            output.stdout.print(
                f"  parity: {verdict}: {parity['samples']} samples{random}{figures}, "
                f"max abs error {parity['max_abs_error']:.3g}",
                highlight=False,
            )
        for line in parity["unchecked"]:
            output.stdout.print(f"  parity: {line.removeprefix('parity ')}", highlight=False)
        if parity.get("judged_by_layers"):
            output.stdout.print(f"  parity: {parity['judged_by_layers']}", highlight=False)
    output.stdout.print(
        f"  model:  {result.model_path}\n  report: {result.report_path} (+ export.md)",
        highlight=False,
    )


def _int8_line(record: dict) -> str:
    """``int8 from ...; input int8 (scale 0.0039, zero point -128), output float32``."""
    edges = []
    for which in ("input", "output"):
        edge = record[which]
        text = f"{which} {edge['dtype']}"
        if "scale" in edge:
            text += f" (scale {edge['scale']:.4g}, zero point {edge['zero_point']})"
        edges.append(text)
    return f"{'; '.join(record['sources'])}; {', '.join(edges)}"


def _passes_line(stats: list[PassStats]) -> str:
    """``fold_sign_scale 9 rewrites (-18/+9 ops) saved 2.4 KiB, cleanup (nothing to do)``."""
    parts = []
    for entry in stats:
        text = entry.name
        if entry.rewrites:
            text += f" {entry.rewrites} rewrites"
        if entry.ops_removed or entry.ops_added:
            text += f" (-{entry.ops_removed}/+{entry.ops_added} ops)"
        if entry.bytes_saved:
            verb = "saved" if entry.bytes_saved > 0 else "added"
            text += f" {verb} {abs(entry.bytes_saved) / 1024:.1f} KiB"
        if not (entry.rewrites or entry.ops_removed or entry.ops_added or entry.bytes_saved):
            text += " (nothing to do)"
        parts.append(text)
    return ", ".join(parts) or "none (LCE's output as converted)"
