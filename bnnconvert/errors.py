"""The exceptions bnnconvert raises on purpose, each with its exit code.

The command line turns a :class:`BnnConvertError` into one line on stderr and
its ``exit_code``; anything else is a bug and shows a traceback only with
``--debug``.
"""

from __future__ import annotations


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
    """A check the user asked for ran and failed (parity, ``--strict``)."""

    exit_code = 1


class OutputProblem(BnnConvertError):
    """An output file could not be written (permissions, disk full)."""
