"""``bnnconvert validate CKPT MODEL.tflite [--data PATH] [--samples N] [--layers] [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import output
from bnnconvert.cli.trust_options import CustomObjects, TrustCheckpoint, warn_if_trusted


def validate(
    ckpt: Annotated[Path, typer.Argument(help="The trained checkpoint the model came from.")],
    model: Annotated[Path, typer.Argument(help="The exported .tflite flatbuffer.")],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="An .npz (x, optional y) or a folder of images [default: test split]."
        ),
    ] = None,
    samples: Annotated[
        int | None, typer.Option("--samples", help="Use at most N inputs (the first N).")
    ] = None,
    layers: Annotated[
        bool, typer.Option("--layers", help="Compare layer by layer even when outputs agree.")
    ] = False,
    kernel: Annotated[
        str, typer.Option("--kernel", help="LCE binary kernel: indirect, reference or default.")
    ] = "indirect",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    trust_checkpoint: TrustCheckpoint = False,
    custom_objects: CustomObjects = None,
) -> None:
    """Check that the flatbuffer computes what the checkpoint computes; exit 1 if not."""
    from bnnconvert.errors import CheckFailed
    from bnnconvert.validate import render_layers
    from bnnconvert.validate import validate as run_validate

    warn_if_trusted(trust_checkpoint)
    with output.progress("Validating") as step:
        result = run_validate(
            ckpt,
            model,
            data=data,
            samples=samples,
            layers=layers,
            kernel=kernel,
            trust_checkpoint=trust_checkpoint,
            custom_objects=custom_objects,
            progress=lambda done, total: step(f"LCE interpreter: {done}/{total} samples"),
        )
    if as_json:
        output.print_json(result.to_dict())
    else:
        lines = [result.summary(), f"  data: {result.data} ({result.kernel} kernel)"]
        if result.top5_agreement is not None:
            lines.append(f"  top-5 agreement: {result.top5_agreement:.2%}")
        lines.append(
            f"  cosine mean {result.cosine_mean:.6f}, max rel error {result.max_rel_error:.3g}, "
            f"{result.samples_per_second:.1f} samples/s"
        )
        lines += [f"  failed: {failure}" for failure in result.failures]
        lines += [f"  {note}" for note in result.notes]
        if layers and result.layers:
            lines += ["", *render_layers(result.layers)]
        output.stdout.print("\n".join(lines), markup=False, highlight=False)
    if not result.passed:
        first = result.first_divergence
        where = f"; first divergence at {first.keras_layer}" if first else ""
        raise CheckFailed(f"parity check failed: {'; '.join(result.failures)}{where}")
