"""The progress line is drawn by a child process, so it moves while the parent is busy."""

from __future__ import annotations

import subprocess
import sys
import time

from bnnconvert.cli.output import visible


def test_spinner_keeps_drawing_while_the_parent_sends_nothing() -> None:
    child = subprocess.Popen(
        [sys.executable, "-m", "bnnconvert.cli.spinner"],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert child.stdin is not None
    child.stdin.write(b"Converting with LCE\n")
    child.stdin.flush()
    time.sleep(1.0)  # the parent is "busy": no updates for a second
    # As output.progress sends it: a file name's control characters made visible.
    child.stdin.write((visible("Checking parity 3/8 \x1b]0;title\x07") + "\n").encode())
    child.stdin.flush()
    time.sleep(0.3)
    child.stdin.close()
    err = child.stderr.read().decode() if child.stderr else ""
    assert child.wait(timeout=5) == 0
    frames = err.split("\r\x1b[2K")
    converting = [f for f in frames if f.startswith(("⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧"))]
    assert sum("Converting with LCE" in f for f in converting) >= 5  # redrawn, not frozen
    assert any("Checking parity 3/8 \\x1b]0;title\\x07" in f for f in frames)  # made visible
    assert "\x07" not in err
    assert frames[-1] == ""  # the line is cleared at the end
