"""``bnnconvert inspect MODEL.tflite [--json | --markdown]``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import output


def inspect(
    model: Annotated[Path, typer.Argument(help="A .tflite flatbuffer (LCE or plain TFLite).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    as_markdown: Annotated[
        bool, typer.Option("--markdown", help="Print the report as Markdown (to save to a file).")
    ] = False,
) -> None:
    """Show what is inside a model: ops, weights, binary vs float MACs, size."""
    from bnnconvert.cli.inspect_view import print_inspect
    from bnnconvert.errors import UsageProblem
    from bnnconvert.inspect import inspect_model
    from bnnconvert.reports.inspect_text import render_markdown

    if as_json and as_markdown:
        raise UsageProblem("both --json and --markdown given; choose one output format")
    result = inspect_model(model)
    if as_json:
        output.print_json(result.to_dict())
    elif as_markdown:
        output.write_text(render_markdown(result))
    else:
        print_inspect(result)
