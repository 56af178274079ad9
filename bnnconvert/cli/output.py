"""One place that decides where and how command output goes.

Data goes to stdout (a table for people, JSON with ``--json``); errors,
hints and progress go to stderr. Progress bars appear only on a terminal.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console

stdout = Console(soft_wrap=True)
stderr = Console(stderr=True, soft_wrap=True)


def wide_stdout(width: int) -> Console:
    """stdout for wide tables: the terminal's own width there, ``width`` columns elsewhere.

    Off a terminal rich assumes 80 columns, which squeezes tables meant for 100+.
    """
    return stdout if stdout.is_terminal else Console(width=width)


def print_json(data: Any) -> None:
    """Write ``data`` as indented JSON to stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def error(message: str) -> None:
    """One line on stderr: ``error: ...``."""
    stderr.print(f"[bold red]error:[/] {message}", highlight=False)


def note(message: str) -> None:
    """A hint or status line on stderr."""
    stderr.print(message, highlight=False)


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
            pipe.write((text.replace("\n", " ") + "\n").encode("utf-8"))
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
