"""``bnnconvert inspect MODEL.tflite [--json]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import output


def inspect(
    model: Annotated[Path, typer.Argument(help="A .tflite flatbuffer (LCE or plain TFLite).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Show what is inside a model: ops, weights, binary vs float MACs, size."""
    from bnnconvert.inspect import inspect_model, render_markdown

    result = inspect_model(model)
    if as_json:
        output.print_json(result.to_dict())
    else:
        output.stdout.print(render_markdown(result), markup=False, highlight=False, end="")
