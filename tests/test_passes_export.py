"""The passes inside ``export``: on by default, listed in export.json, off with --no-optimize."""

from __future__ import annotations

import json
from pathlib import Path

from bnnconvert.cli.main import run
from bnnconvert.export import export
from bnnconvert.passes import OptimizeOptions

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "digits"


def test_export_runs_exact_passes_by_default_and_reports_them(tmp_path):
    result = export(BUNDLED, output_dir=tmp_path / "default")
    report = json.loads(result.report_path.read_text())
    names = [p["name"] for p in report["passes"]]
    assert names == ["fold_sign_scale", "cleanup"]
    fold = report["passes"][0]
    assert fold["rewrites"] == 9 and fold["ops_removed"] == 18 and fold["ops_added"] == 9
    assert report["op_counts"]["MUL"] == 3  # the 9 pre-sign MULs are gone
    sizes = report["optimization"]
    assert sizes["optimized_model_bytes"] < sizes["lce_model_bytes"]


def test_no_optimize_keeps_lce_output(tmp_path):
    result = export(
        BUNDLED, output_dir=tmp_path / "raw", optimize=OptimizeOptions().with_raw_output()
    )
    report = json.loads(result.report_path.read_text())
    assert report["passes"] == []
    assert report["op_counts"]["MUL"] == 12
    sizes = report["optimization"]
    assert sizes["optimized_model_bytes"] == sizes["lce_model_bytes"]


def test_cli_rejects_lossy_flags_with_no_optimize(tmp_path, capsys):
    argv = ["export", str(BUNDLED), "-o", str(tmp_path), "--no-optimize", "--float-weights", "fp16"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Expected --no-optimize alone" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "model.tflite").exists()
