"""One place that decides where and how command output goes.

Data goes to stdout (a table for people, JSON with ``--json``); errors,
hints and progress go to stderr. Progress bars appear only on a terminal.

Strings from files (op, tensor and layer names, labels, metadata, device
output) reach the terminal only with their control characters made visible
(ESC is shown as ``\\x1b``), so a model cannot retitle or clear the terminal:
:class:`SafeConsole` does it for everything rich renders, :func:`visible` for
the rest (errors, plain text, progress lines). JSON escapes them itself.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.errors import MarkupError
from rich.markup import escape
from rich.segment import Segment
from rich.text import Text

from bnnconvert.json_report import report_json

# C0 controls but tab and newline, DEL, C1 controls, and the invisible format
# characters that reorder or hide text (bidi overrides and isolates, zero-width).
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_HIDDEN = re.compile(f"[{_CONTROLS}]")
_HIDDEN_ONE_LINE = re.compile(f"[{_CONTROLS}\t\n]")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape_char(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, one_line: bool = True) -> str:
    """``text`` with control characters written as escapes (ESC -> ``\\x1b``).

    Arguments:
        text: any string, typically from a file.
        one_line: also escape newlines and tabs (for error lines and table cells).

    Returns:
        A string safe to print to a terminal; unchanged when it had no controls.
    """
    return (_HIDDEN_ONE_LINE if one_line else _HIDDEN).sub(_escape_char, text)


class SafeConsole(Console):
    """A rich console that makes control characters in rendered text visible.

    Rich keeps ESC and most other controls in the text it renders; here every
    rendered segment that is not one of rich's own control codes goes through
    :func:`visible`, so tables, ``Text`` and markup built from file strings are
    all covered, whoever built them.
    """

    def render_str(self, text: str, **kwargs: Any) -> Text:
        """Rich's ``render_str`` on the text with controls made visible before it is measured.

        Text that is not valid markup is shown as it is: a file string in a
        markup-enabled print (a layer named ``[/x]``) would otherwise raise
        :class:`rich.errors.MarkupError`.
        """
        text = visible(text, one_line=False)
        try:
            return super().render_str(text, **kwargs)
        except MarkupError:
            return super().render_str(text, **{**kwargs, "markup": False})

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterator[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not _HIDDEN.search(segment.text):
                yield segment
            else:
                yield Segment(visible(segment.text, one_line=False), segment.style)


def cell(text: str, style: str = "") -> Text:
    """A rich ``Text`` (table cell, title) of a string from a file, controls made visible.

    Building ``Text`` directly skips :meth:`SafeConsole.render_str`, so rich would
    measure the raw string and crop the escapes; build such cells here.
    """
    return Text(visible(text), style=style)


stdout = SafeConsole(soft_wrap=True)
stderr = SafeConsole(stderr=True, soft_wrap=True)


def wide_stdout(width: int) -> Console:
    """stdout for wide tables: the terminal's own width there, ``width`` columns elsewhere.

    Off a terminal rich assumes 80 columns, which squeezes tables meant for 100+.
    """
    return stdout if stdout.is_terminal else SafeConsole(width=width)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout (non-finite numbers as strings)."""
    sys.stdout.write(report_json(data) + "\n")


def write_text(text: str) -> None:
    """Write plain text (e.g. a Markdown report) to stdout, control characters made visible."""
    sys.stdout.write(visible(text, one_line=False))


def error(message: str) -> None:
    """One line on stderr: ``error: ...`` (controls, newlines and markup shown as text)."""
    stderr.print(f"[bold red]error:[/] {escape(visible(message))}", highlight=False)


def note(message: str) -> None:
    """A hint or status line on stderr (shown as text, never as rich markup)."""
    stderr.print(visible(message, one_line=False), markup=False, highlight=False)


@contextmanager
def progress(description: str) -> Iterator[Any]:
    """A moving progress line with the step's name and elapsed time, on a terminal only.

    Yields a callable ``step(text)`` that changes the description (include a
    count such as ``round 3/20`` where there is one). The line is drawn by a
    child process (:mod:`bnnconvert.cli.spinner`), so it keeps moving while
    TensorFlow or LCE's converter holds the GIL.
    """
    if not stderr.is_terminal:
        yield lambda text: None
        return
    child = subprocess.Popen(
        [sys.executable, "-m", "bnnconvert.cli.spinner"], stdin=subprocess.PIPE, stdout=None
    )
    assert child.stdin is not None
    pipe = child.stdin

    def step(text: str) -> None:
        with contextlib.suppress(OSError):
            pipe.write((visible(text) + "\n").encode("utf-8"))
            pipe.flush()

    step(description)
    try:
        yield step
    finally:
        with contextlib.suppress(OSError):
            pipe.close()
        try:
            child.wait(timeout=2)
        except subprocess.TimeoutExpired:
            child.kill()
