"""`bnnconvert bench` end to end on the host: table, three reports, HTML rendered by Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnnconvert.bench import InterpreterConfig, Measurement, bench
from bnnconvert.bench.benchmark_output import parse_benchmark_output
from bnnconvert.bench.report_html import render_html
from bnnconvert.bench.report_md import render_markdown
from bnnconvert.bench.result import BenchResult, ModelFile
from bnnconvert.bench.stats import LatencyStats
from bnnconvert.devices import DeviceInfo
from bnnconvert.devices.runner import median_is_stable
from bnnconvert.errors import FlatbufferProblem, UsageProblem

DATA = Path(__file__).parent / "data" / "bench"
CLI = Path(sys.executable).parent / "bnnconvert"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def bundled_model(tmp_path_factory) -> Path:
    """The bundled digits model, exported the default way."""
    from bnnconvert.export import export

    out = tmp_path_factory.mktemp("digits")
    return export(Path(__file__).parents[1] / "models" / "digits", output_dir=out).model_path


@pytest.fixture
def two_models(tmp_path, bundled_model, tiny_bnn_tflite) -> list[Path]:
    """The bundled model first, then a different small BNN to compare it with."""
    digits = tmp_path / "digits.tflite"
    digits.write_bytes(bundled_model.read_bytes())
    tiny = tmp_path / "tiny.tflite"
    tiny.write_bytes(tiny_bnn_tflite)
    return [digits, tiny]


def test_cli_prints_a_table_and_writes_three_reports(two_models, tmp_path):
    out = tmp_path / "report"
    done = subprocess.run(
        [str(CLI), "bench", *map(str, two_models), "--threads", "1", "--runs", "5", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for text in ("median ms", "p10–p90 ms", "1T indirect", "1T default", "vs first", "fastest for"):
        assert text in done.stdout
    data = json.loads((out / "bench.json").read_text())
    assert data["complete"] and data["method"] == "python-runner"
    assert [m["name"] for m in data["models"]] == ["digits.tflite", "tiny.tflite"]
    assert data["models"][0]["sha256"] != data["models"][1]["sha256"]
    assert len(data["measurements"]) == 2 * 4
    assert all(len(m["samples_us"]) == 5 for m in data["measurements"])
    assert data["device"]["kind"] == "local" and data["tools"]["device_larq_compute_engine"]
    md = (out / "bench.md").read_text()
    assert "## Latency" in md and "digits.tflite" in md and "tiny.tflite" in md and "★" in md
    html = (out / "bench.html").read_text()
    assert html.count("<svg") == 3  # a distribution per model and the comparison
    _assert_self_contained(html)
    _assert_renders(out / "bench.html", tmp_path / "shot.png")
    assert not list(out.glob(".*.tmp"))


def _assert_self_contained(html: str) -> None:
    for external in ("<script", "src=", "href=", "@import", "url("):
        assert external not in html
    assert "http" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")


def _assert_renders(html: Path, png: Path) -> None:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: ./setup.sh --test installs Debian's chromium")
        pytest.skip("needs Chromium (Debian chromium) to render the report")
    from PIL import Image

    subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={png.parent / 'chromium-profile'}",
            f"--screenshot={png}",
            "--window-size=1200,1600",
            html.resolve().as_uri(),
        ],
        capture_output=True,
        timeout=120,
        check=True,
    )
    image = Image.open(png).convert("RGB")
    assert image.size == (1200, 1600)
    pixels = list(image.getdata())
    ink = sum(1 for p in pixels if sum(p) < 600) / len(pixels)
    assert ink > 0.01, "the screenshot is (nearly) blank"
    assert len(set(pixels)) > 50  # text, plot colours and antialiasing, not a flat page


def _result_from_recorded_device_output() -> BenchResult:
    """What the adb path builds from lce_benchmark_model output, here from fixtures."""
    runs = [
        parse_benchmark_output((DATA / name).read_text())
        for name in (
            "benchmark_model_old_op_profiling.txt",
            "benchmark_model_info_percentiles_op_profiling.txt",
        )
    ]
    config = InterpreterConfig(4, False, None)
    m = Measurement(0, config, [r.inference.avg for r in runs], 552, tool_runs=runs)
    return BenchResult(
        device=DeviceInfo("adb:0A161JEC205981", "adb", model="Google Pixel 4a", cores=8),
        method="lce_benchmark_model",
        models=[ModelFile("/m/tiny_bnn.tflite", "tiny_bnn.tflite", "0" * 64, 17292)],
        configs=[config],
        measurements=[m],
        warmup=1,
        runs=None,
        autotune=False,
        op_profiling=True,
        tools={},
        started_at="2026-01-01T00:00:00+00:00",
        problem="adb:0A161JEC205981 stopped answering while running lce_benchmark_model",
    )


def test_per_op_breakdown_and_incomplete_banner_render(tmp_path):
    result = _result_from_recorded_device_output()
    types = {r.node_type: r for r in result.measurements[0].op_types}
    assert types["LceBconv2d"].avg_ms == pytest.approx(0.534) and types["LceBconv2d"].count == 2
    html = render_html(result)
    assert "Per-op time: tiny_bnn.tflite, 4 threads, default bgemm" in html
    assert "LceBconv2d ×2" in html and "Incomplete:" in html
    _assert_self_contained(html)
    md = render_markdown(result)
    assert "**Incomplete:**" in md and "| LceBconv2d | 2 | 0.534 |" in md
    assert "2×552" in md  # two samples, each the mean of an invocation's 552 runs
    json.dumps(result.to_dict())


def test_latency_stats():
    s = LatencyStats.of([10.0, 11.0, 12.0, 13.0, 100.0])
    assert (s.median_us, s.min_us, s.max_us, s.n) == (12.0, 10.0, 100.0, 5)
    assert s.p10_us == pytest.approx(10.4) and s.p90_us == pytest.approx(65.2)
    assert s.noisy and s.cv > 1
    steady = LatencyStats.of([100.0, 101.0, 99.0, 100.5, 99.5])
    assert not steady.noisy and steady.median_us == 100.0
    assert median_is_stable([100.0 + (i % 3) * 0.1 for i in range(30)], 0.02)
    assert not median_is_stable([100.0 * (1 + i % 5) for i in range(30)], 0.02)


def test_bad_inputs_are_one_line_errors(tmp_path, two_models):
    not_tflite = tmp_path / "model.tflite"
    not_tflite.write_bytes(b"PK\x03\x04 this is a zip")
    with pytest.raises(FlatbufferProblem, match="not a TFLite flatbuffer"):
        bench([not_tflite])
    with pytest.raises(UsageProblem, match="missing.tflite: no such file"):
        bench([tmp_path / "missing.tflite"])
    with pytest.raises(UsageProblem, match="Per-op profiling needs lce_benchmark_model"):
        bench(two_models, op_profiling=True)
    with pytest.raises(UsageProblem, match="Expected --runs of at least 1, got 0"):
        bench(two_models, runs=0)
    done = subprocess.run(
        [str(CLI), "bench", str(two_models[0]), "--device", "adb:x;reboot"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: Expected --device adb or adb:SERIAL (serials as `adb devices` lists them), "
        "got 'adb:x;reboot'"
    ]
