"""``bnnconvert export CKPT --target arm64``."""

from __future__ import annotations

from pathlib import Path

import typer

from bnnconvert.cli import output


def export(
    ckpt: Path = typer.Argument(
        ..., help="Checkpoint: SavedModel dir, .keras/.h5 file, or TF checkpoint dir."
    ),
    target: str = typer.Option(
        "arm64", "--target", "-t", help="arm64, armv7, x86_64 or xcore (see README)."
    ),
    out: Path | None = typer.Option(
        None, "--output", "-o", help="Output directory [default: exports/<name>-<target>]."
    ),
    input_shape: str | None = typer.Option(
        None, "--input-shape", help="H,W,C to convert for, e.g. 224,224,3."
    ),
    arch: str | None = typer.Option(
        None, "--arch", help="Architecture of a weights-only .h5, e.g. binarydensenet28."
    ),
    num_classes: int | None = typer.Option(
        None, "--num-classes", help="Classes for --arch [default: read from the weights]."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Convert a trained Larq checkpoint into an LCE flatbuffer and a report."""
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
        f"  report: {result.report_path}",
        highlight=False,
    )
