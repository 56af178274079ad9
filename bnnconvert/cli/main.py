"""Entry point: registers the commands, maps errors to one line and an exit code.

Importing this module must not import TensorFlow, so ``bnnconvert --help``
is instant; the command modules import the library inside their functions.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from bnnconvert.cli import bench_cmd, export_cmd, inspect_cmd, validate_cmd
from bnnconvert.cli.output import error
from bnnconvert.errors import BnnConvertError

app = typer.Typer(
    name="bnnconvert",
    help="Export trained Larq BNNs to bitpacked LCE flatbuffers, prove parity, "
    "benchmark on devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show TensorFlow's own logs.")
    ] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
) -> None:
    from bnnconvert import _tf

    _tf.set_verbose(verbose)
    if debug:
        os.environ["BNNCONVERT_DEBUG"] = "1"


app.command("export")(export_cmd.export)
app.command("inspect")(inspect_cmd.inspect)
app.command("validate")(validate_cmd.validate)
app.command("bench")(bench_cmd.bench)


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (and exit with it when ``argv`` is None)."""
    try:
        app(args=argv, prog_name="bnnconvert")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:
        error("interrupted; no partial output was left behind")
        code = 130
    except BnnConvertError as e:
        if os.environ.get("BNNCONVERT_DEBUG"):
            raise
        error(str(e))
        code = e.exit_code
    if argv is None:
        sys.exit(code)
    return code
