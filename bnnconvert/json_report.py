"""JSON text of a report that every JSON parser reads: no ``NaN``/``Infinity`` literals.

Python's ``json`` writes a non-finite float as ``NaN``, ``Infinity`` or
``-Infinity``, which JSON does not have (``JSON.parse`` rejects them). A
report holds such values when a model's outputs are not finite (a real
fault), so every report bnnconvert writes as JSON (``validate --json``,
``export.json``, ``bench.json``, the ``--json`` of each command) goes through
:func:`report_json`, which writes them as the strings ``"nan"``, ``"inf"`` and
``"-inf"``. numpy scalars and arrays become plain numbers and lists.

Imports nothing heavy (not numpy), so the command line stays fast.
"""

from __future__ import annotations

import json
import math
from typing import Any


def jsonable(value: Any) -> Any:
    """``value`` with non-finite floats as strings and numpy values as Python ones.

    Example:
        >>> jsonable({"error": float("inf"), "cosines": [float("nan"), 1.0]})
        {'error': 'inf', 'cosines': ['nan', 1.0]}
    """
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):
        return jsonable(value.tolist())  # a numpy scalar or array
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


def report_json(data: Any, *, indent: int | None = 2) -> str:
    """Valid JSON text of ``data`` (see the module docstring); other objects as ``str()``.

    Arguments:
        data: a report, typically a ``to_dict()``.
        indent: as for :func:`json.dumps`.

    Returns:
        The JSON text, without a trailing newline.
    """
    return json.dumps(jsonable(data), indent=indent, allow_nan=False, default=str)
