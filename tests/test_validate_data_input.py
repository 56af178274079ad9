"""``validate`` refuses data it cannot judge in one line, and its JSON is always valid JSON."""

from __future__ import annotations

import json

import pytest

from bnnconvert.cli import output
from bnnconvert.json_report import report_json


def _strict_json(text: str) -> object:
    """Parse as JavaScript's JSON.parse does: NaN and Infinity are not JSON."""

    def refuse(literal: str) -> None:
        raise ValueError(f"not JSON: {literal}")

    return json.loads(text, parse_constant=refuse)


def test_report_json_writes_non_finite_numbers_as_strings() -> None:
    import numpy as np

    report = {
        "max_abs_error": float("inf"),
        "outputs": [{"cosine_min": float("nan"), "low": -float("inf"), "ok": 0.5}],
        "seconds": np.float32(1.5),
        "shape": np.array([1, 10]),
    }
    assert _strict_json(report_json(report)) == {
        "max_abs_error": "inf",
        "outputs": [{"cosine_min": "nan", "low": "-inf", "ok": 0.5}],
        "seconds": 1.5,
        "shape": [1, 10],
    }


def test_print_json_is_valid_json_with_non_finite_numbers(capsys) -> None:
    output.print_json({"max_abs_error": float("inf"), "cosine_min": float("nan")})
    out = capsys.readouterr().out
    assert _strict_json(out) == {"max_abs_error": "inf", "cosine_min": "nan"}
    with pytest.raises(ValueError, match="not JSON: Infinity"):
        _strict_json(json.dumps({"max_abs_error": float("inf")}))  # what it wrote before
