"""``bnnconvert validate CKPT MODEL.tflite [--data PATH] [--samples N] [--layers] [--json]``.

Exit codes: 0 for ``pass`` and ``pass (ties)`` (a warning with the tie
counts on stderr; ``--fail-on-ties`` makes it 1), 1 for ``fail``, 2 when the
inputs cannot be checked (e.g. a flatbuffer exported from another checkpoint).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import options, output
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
    kernel: options.Kernel = "indirect",
    lossy: Annotated[
        bool,
        typer.Option("--lossy", help="Judge as a lossy export (top-1 agreement and accuracy)."),
    ] = False,
    fail_on_ties: Annotated[
        bool, typer.Option("--fail-on-ties", help="Exit 1 on 'pass (ties)' too.")
    ] = False,
    no_cache: Annotated[
        bool,
        typer.Option(
            "--no-cache", help="Recompute Keras outputs (do not read or write the cache)."
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    trust_checkpoint: TrustCheckpoint = False,
    custom_objects: CustomObjects = None,
) -> None:
    """Check that the flatbuffer computes what the checkpoint computes; exit 1 if not."""
    from bnnconvert.errors import CheckFailed, for_command_line
    from bnnconvert.reports.validate_text import render_layers
    from bnnconvert.validate import PASS_TIES, failure_line
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
            lossy=lossy,
            fail_on_ties=fail_on_ties,
            use_cache=not no_cache,
            trust_checkpoint=trust_checkpoint,
            custom_objects=custom_objects,
            progress=lambda done, total: step(f"LCE interpreter: {done}/{total} samples"),
        )
    result.notes = [for_command_line(note) for note in result.notes]  # flags, not arguments
    if as_json:
        output.print_json(result.to_dict())
    else:
        lines = [result.summary(), f"  data: {result.data} ({result.kernel} kernel)"]
        if len(result.outputs) > 1:
            for o in result.outputs:
                top1 = f", top-1 {o.top1_agreement:.2%}" if o.top1_agreement is not None else ""
                lines.append(
                    f"  output {o.name} {tuple(o.shape)}: max abs error {o.max_abs_error:.3g}, "
                    f"min cosine {o.cosine_min:.6f}{top1}"
                )
        if result.top5_agreement is not None:
            lines.append(f"  top-5 agreement: {result.top5_agreement:.2%}")
        lines.append(
            f"  cosine mean {result.cosine_mean:.6f}, max rel error {result.max_rel_error:.3g}, "
            f"{result.samples_per_second:.1f} samples/s "
            f"({result.reference} outputs: cache {result.keras_cache})"
        )
        lines += [f"  failed: {failure}" for failure in result.failures]
        if result.judged_by_layers:
            lines.append(f"  {result.judged_by_layers}")
        lines += [f"  {note}" for note in result.notes]
        lines += [f"  not checked: {line}" for line in result.unchecked]
        if layers and result.layers:
            lines += ["", *render_layers(result)]
        output.stdout.print("\n".join(lines), markup=False, highlight=False)
    if result.verdict == PASS_TIES and result.passed:
        output.note(
            f"warning: pass (ties): {result.tie_flips} sign flip(s) at float-rounding ties "
            "explain the differences; --fail-on-ties makes this a failure"
        )
    if not result.passed:
        raise CheckFailed(failure_line(result))
