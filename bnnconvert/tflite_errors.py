"""What a TFLite runtime's error output means, in one line.

TFLite (in ``benchmark_model``, ``lce_benchmark_model`` and LCE's Python
interpreter) reports why a model cannot run on ``ERROR:`` lines, and then
ends with something generic ("Benchmarking failed.", "the following was
false: interpreter_->AllocateTensors() == kTfLiteOk"). :func:`explain` finds
the known causes in the whole text and quotes the first ``ERROR:`` lines, so
the user sees the cause and what to do instead of the last line.
"""

from __future__ import annotations

import re

_UNRESOLVED = re.compile(r"Encountered unresolved custom op: ([^\s.]+)")
_OP_VERSION = re.compile(r"Didn't find op for builtin opcode '(\w+)' version '(\d+)'")
_DELEGATE = re.compile(r"Failed to apply (\w+) delegate")
_GLIBC = re.compile(r"version [`'](GLIBC(?:XX)?_[\d.]+)' not found")
_TENSOR_TYPE = re.compile(r"Expected tensor type (\w+) but got (\w+) for tensor (.+)")
_DIMENSION = re.compile(r"Expected (\d+) for dimension (\d+) but found (\d+) for tensor (.+)")
_CAUSES = (_UNRESOLVED, _OP_VERSION, _DELEGATE, _GLIBC, _TENSOR_TYPE, _DIMENSION)
_ERROR_LINE = re.compile(r"^\s*(?:.*?\bE tflite\s*:\s*|.*?\bERROR:\s*)(.+?)\s*$")
_QUOTE_LINES = 2
_QUOTE_CHARS = 300


def first_errors(text: str, limit: int = _QUOTE_LINES) -> list[str]:
    """The first ``limit`` distinct ``ERROR:`` messages in ``text`` (prefixes stripped)."""
    found: list[str] = []
    for line in text.splitlines():
        m = _ERROR_LINE.match(line)
        if m and m[1] not in found:
            found.append(m[1])
            if len(found) == limit:
                break
    return found


def cause(text: str, *, binary: bool) -> str | None:
    """The known cause in a runtime's error output, with what to do; None if unknown.

    Arguments:
        text: everything the runtime printed (or the exception's message).
        binary: the runtime is a ``benchmark_model`` binary on a device (True)
            or LCE's Python interpreter on this machine (False).
    """
    if m := _GLIBC.search(text):
        return (
            f"the binary needs {m[1]}, which the device's C/C++ library lacks: it was built "
            "for a newer OS; use a build made for the device's OS (or a static one)"
        )
    if m := _UNRESOLVED.search(text):
        op = m[1]
        if binary and op.startswith("Lce"):
            return (
                f"the binary does not know LCE's op {op}: it is not an LCE build of "
                "benchmark_model; use lce_benchmark_model from an LCE release"
            )
        runtime = "this binary" if binary else "LCE's interpreter"
        return (
            f"the model uses custom op {op}, which {runtime} does not provide; bnnconvert "
            "models need only TFLite builtins and LCE ops"
        )
    if m := _OP_VERSION.search(text):
        runtime = "the binary's TFLite" if binary else "LCE's interpreter"
        return f"{runtime} is older than the model (it has no {m[1]} version {m[2]}); " + (
            "use an lce_benchmark_model from the same LCE release as the converter"
            if binary
            else "install the larq-compute-engine version that converted the model"
        )
    if m := _DELEGATE.search(text):
        return f"the {m[1]} delegate could not take this model; benchmark it without that delegate"
    if m := _TENSOR_TYPE.search(text):
        return f"input {m[3].strip()!r} must be {m[1]}, but {m[2]} was given"
    if m := _DIMENSION.search(text):
        return f"input {m[4].strip()!r} must have {m[1]} in dimension {m[2]}, but {m[3]} was given"
    return None


def explain(text: str, *, binary: bool) -> str:
    """One line for a failed run: the cause (when known) and the first ``ERROR:`` lines.

    Returns:
        ``"<cause>; it printed: <ERROR lines>"``, or the ERROR lines (or the last
        non-empty line) alone when the cause is unknown.
    """
    errors = first_errors(text)
    if not errors:  # older builds print some causes without "ERROR:"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        known = [line for line in lines if any(p.search(line) for p in _CAUSES)]
        errors = known[:_QUOTE_LINES] or lines[-1:] or ["<no output>"]
    quoted = " / ".join(errors)
    if len(quoted) > _QUOTE_CHARS:
        quoted = quoted[: _QUOTE_CHARS - 3] + "..."
    found = cause(text, binary=binary)
    return f"{found}; it printed: {quoted}" if found else quoted
