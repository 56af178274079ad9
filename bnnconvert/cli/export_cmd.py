"""``bnnconvert export CKPT --target arm64``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import output


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
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Exit 1 if a layer marked binary did not become a binary op "
            "(reports are written; the model as model.rejected.tflite).",
        ),
    ] = False,
) -> None:
    """Convert a trained Larq checkpoint into an LCE flatbuffer and a report."""
    from bnnconvert.cli.audit_view import print_audit_summary
    from bnnconvert.convert import parse_input_shape
    from bnnconvert.export import export as run_export

    shape = parse_input_shape(input_shape) if input_shape else None
    with output.progress("Starting") as step:
        result = run_export(
            ckpt,
            target=target,
            output_dir=out,
            input_shape=shape,
            arch=arch,
            num_classes=num_classes,
            step=step,
            strict=strict,
        )
    if as_json:
        output.print_json(result.to_dict())
        return
    ops = ", ".join(f"{name} {count}" for name, count in result.op_counts.items())
    output.stdout.print(
        f"Exported {result.checkpoint['model_name']} for {result.target.name}: "
        f"{result.model_bytes / 1024:.1f} KiB in {result.conversion_seconds:.1f} s\n"
        f"  ops: {ops}\n"
        f"  model:  {result.model_path}\n"
        f"  report: {result.report_path} (+ export.md)",
        highlight=False,
    )
    print_audit_summary(result.extra["audit"])
