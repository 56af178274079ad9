"""The exceptions bnnconvert raises on purpose, each with its exit code.

The command line turns a :class:`BnnConvertError` into one line on stderr and
its ``exit_code``; anything else is a bug and shows a traceback only with
``--debug``.

Messages name the caller's Python keyword argument as ``name=`` (``Expected
input_shape= ...``); the command line prints them through
:func:`for_command_line`, which names the flag instead (``Expected
--input-shape ...``).
"""

from __future__ import annotations

import os
import re

FLAGS = {
    "input_shape": "--input-shape",
    "target": "--target",
    "output_dir": "-o",
    "preprocessing": "--preprocessing",
    "labels": "--labels",
    "input_type": "--input-type",
    "output_type": "--output-type",
    "samples": "--samples",
    "float_weights": "--float-weights",
    "int8_activations": "--int8-activations",
    "calibration": "--calibration",
    "data": "--data",
    "arch": "--arch",
    "num_classes": "--num-classes",
    "trust_checkpoint": "--trust-checkpoint",
    "custom_objects": "--custom-objects",
    "fail_on_ties": "--fail-on-ties",
    "runs": "--runs",
    "warmup": "--warmup",
    "threads": "--threads",
    "kernel": "--kernel",
    "benchmark_binary": "--benchmark-binary",
    "op_profiling": "--op-profiling",
    "device": "--device",
}
"""Python keyword argument -> the command-line flag that sets it."""

# ``name=`` as a whole word, not followed by a value (``target=arm64`` stays as it is).
_ARGUMENT = re.compile(rf"\b({'|'.join(FLAGS)})=(?=[\s,;:.)]|$)")


def for_command_line(message: str) -> str:
    """``message`` with each Python argument (``input_shape=``) named by its flag.

    Example:
        >>> for_command_line("Expected input_shape= as height, width, channels")
        'Expected --input-shape as height, width, channels'
    """
    return _ARGUMENT.sub(lambda match: FLAGS[match[1]], message)


def first_line(error: BaseException, limit: int = 300) -> str:
    """The informative first line of an exception's text, for one-line messages.

    Keras's texts may start with a blank line or a config dump before
    "Exception encountered:" (the cause follows it); an empty text gives the
    exception's type name. At most ``limit`` characters.
    """
    text = str(error).strip()
    _, found, cause = text.partition("Exception encountered:")
    text = cause.strip() if found else text
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]


def check_whole_number(name: str, value: object) -> None:
    """Refuse a value of argument ``name`` that is not an int (None passes: a default).

    Raises:
        UsageProblem: ``value`` is a str, float, bool, ...
    """
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise UsageProblem(f"Expected {name}= as a whole number, got {value!r}")


def check_path(name: str, value: object) -> None:
    """Refuse a value of argument ``name`` that is not a path (``str`` or ``os.PathLike``).

    Raises:
        UsageProblem: ``value`` is None, a number, ...
    """
    if not isinstance(value, (str, os.PathLike)):
        raise UsageProblem(f"Expected {name}= as a file or folder path, got {value!r}")


class BnnConvertError(Exception):
    """Base class: a problem the user can fix, described in one line."""

    exit_code = 2


class UsageProblem(BnnConvertError):
    """A bad argument or a bad combination of arguments."""


class CheckpointProblem(BnnConvertError):
    """A checkpoint that cannot be found, recognised or loaded."""


class FlatbufferProblem(BnnConvertError):
    """A file that is not a valid TFLite flatbuffer, or one we cannot handle."""


class ConversionProblem(BnnConvertError):
    """LCE's converter failed on a model that loaded fine."""


class EnvironmentProblem(BnnConvertError):
    """The Python environment is set up in a way bnnconvert cannot work with."""


class DeviceProblem(BnnConvertError):
    """A benchmark device could not be reached or stopped answering."""


class CheckFailed(BnnConvertError):
    """A check the user asked for ran and failed (parity, ``--strict``).

    ``result``: what the command produced anyway (export's ``ExportResult``), or None.
    """

    exit_code = 1
    result: object = None


class OutputProblem(BnnConvertError):
    """An output file could not be written (permissions, disk full)."""
