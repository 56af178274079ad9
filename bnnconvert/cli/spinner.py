"""A progress line drawn by a child process, so it moves while the parent is busy.

TensorFlow's import and LCE's converter hold the GIL for seconds at a time,
which freezes any spinner drawn by a thread of the same process. This module
runs as ``python -m bnnconvert.cli.spinner``: it reads step descriptions, one
per line, from stdin and redraws ``⠋ <step> (12.3 s)`` on its stderr (the
user's terminal) ten times a second until stdin closes, then clears the line.
It imports nothing heavy and never writes anywhere but its stderr. Its
parent (:func:`bnnconvert.cli.output.progress`) sends step texts with
control characters already made visible.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import sys
import time

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_INTERVAL = 0.1


def main() -> None:
    """Draw until stdin closes."""
    started = time.monotonic()
    text = ""
    frame = 0
    selector = selectors.DefaultSelector()
    selector.register(sys.stdin, selectors.EVENT_READ)
    out = sys.stderr
    buffered = ""
    while True:
        if selector.select(timeout=_INTERVAL):
            chunk = os.read(sys.stdin.fileno(), 4096).decode("utf-8", "replace")
            if not chunk:
                break
            buffered += chunk
            *lines, buffered = buffered.split("\n")
            if lines:
                text = lines[-1]
        width = max(os.get_terminal_size(out.fileno()).columns - 1, 20) if out.isatty() else 79
        line = f"{_FRAMES[frame % len(_FRAMES)]} {text} ({time.monotonic() - started:.1f} s)"
        out.write("\r\x1b[2K" + line[:width])
        out.flush()
        frame += 1
    out.write("\r\x1b[2K")
    out.flush()


if __name__ == "__main__":
    # Ctrl-C is the parent's to handle; this process ends when its stdin closes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with contextlib.suppress(BrokenPipeError, OSError):
        main()
