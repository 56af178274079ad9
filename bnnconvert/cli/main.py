"""Entry point: registers the commands, maps errors to one line and an exit code.

Importing this module must not import TensorFlow, so ``bnnconvert --help``
is instant; the command modules import the library inside their functions.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperOption

from bnnconvert import __version__
from bnnconvert.cli import bench_cmd, export_cmd, inspect_cmd, validate_cmd
from bnnconvert.cli.output import error
from bnnconvert.errors import BnnConvertError, for_command_line

# Global flags, accepted before or after the command (`bnnconvert inspect m.tflite --debug`).
GLOBAL_FLAGS = ("--verbose", "-v", "--debug")

app = typer.Typer(
    name="bnnconvert",
    help="Export trained Larq BNNs to bitpacked LCE flatbuffers, prove parity, "
    "benchmark on devices.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"bnnconvert {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show TensorFlow's own logs.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors (exit codes unchanged).")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print the version and exit.", callback=_print_version, is_eager=True
        ),
    ] = False,
) -> None:
    from bnnconvert import _tf

    _tf.set_verbose(verbose)
    if debug:
        os.environ["BNNCONVERT_DEBUG"] = "1"


app.command("export")(export_cmd.export)
app.command("inspect")(inspect_cmd.inspect)
app.command("validate")(validate_cmd.validate)
app.command("bench")(bench_cmd.bench)


def hoist_global_flags(argv: list[str]) -> list[str]:
    """Move ``--verbose``/``-v``/``--debug`` given after the command to the front.

    Everything after a ``--`` separator is left alone.
    """
    end = argv.index("--") if "--" in argv else len(argv)
    flags = [a for a in argv[:end] if a in GLOBAL_FLAGS]
    rest = [a for a in argv[:end] if a not in GLOBAL_FLAGS]
    return [*flags, *rest, *argv[end:]]


def _tidy_help(command: Any) -> None:
    """Help that reads well: no ``<bool>`` after flags, arguments in capitals.

    Arguments are shown as ``CKPT``, ``MODEL`` or ``MODEL...`` (several), and
    a literal ``[default: ...]`` written in a help text is kept as text
    rather than eaten as Rich markup.
    """
    with typer.Context(command) as ctx:
        command.get_help_option(ctx)  # created and cached now, so it can be tidied too
    for param in [*command.params, command.get_help_option(ctx)]:
        if isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar is None and param.name:
            name = param.name.upper()
            shown = f"{name.removesuffix('S')}..." if param.nargs != 1 else name
            param.metavar = shown
            param._usage_display_name = lambda shown=shown: shown  # no {braces} in the usage line
        help_text = getattr(param, "help", None)
        if help_text and "[default:" in help_text:
            param.help = help_text.replace("[default:", "\\[default:")
    for sub in getattr(command, "commands", {}).values():
        _tidy_help(sub)


def command() -> Any:
    """The click command behind ``bnnconvert``, help tidied."""
    cmd = typer.main.get_command(app)
    _tidy_help(cmd)
    return cmd


def run(argv: list[str] | None = None) -> int:
    """Run the CLI; return the exit code (and exit with it when ``argv`` is None)."""
    args = hoist_global_flags(sys.argv[1:] if argv is None else list(argv))
    preset = os.environ.get("BNNCONVERT_DEBUG")
    debug = bool(preset) or "--debug" in args[: args.index("--") if "--" in args else len(args)]
    try:
        command().main(args=args, prog_name="bnnconvert")
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if code == 130:  # typer turns Ctrl-C into exit 130 before it reaches us
            error("interrupted; no partial output was left behind")
    except KeyboardInterrupt:
        error("interrupted; no partial output was left behind")
        code = 130
    except BnnConvertError as e:
        if debug:
            traceback.print_exc()
        error(for_command_line(str(e)))  # flags, not the library's argument names
        code = e.exit_code
    except MemoryError:
        if debug:
            traceback.print_exc()
        error(
            "ran out of memory; use a smaller model or input, fewer --samples, "
            "or a machine with more memory"
        )
        code = 2
    except Exception as e:  # a bug: said so in one line; the traceback with --debug
        if debug:
            raise
        error(
            f"internal error ({type(e).__name__}: {e}); this is a bug in bnnconvert: "
            "rerun with --debug and report the traceback"
        )
        code = 1
    finally:
        if preset is None:  # --debug of one in-process run must not outlive it
            os.environ.pop("BNNCONVERT_DEBUG", None)
    if argv is None:
        sys.exit(code)
    return code
