"""`bnnconvert bench` end to end on the host: table, three reports, HTML rendered by Chromium."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
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
def bundled_model(bundled_export) -> Path:
    """The bundled digits model, exported the default way (once per session)."""
    return bundled_export.model_path


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
    for text in (
        "median ms",
        "p10–p90 ms",
        "1T indirect",
        "1T default",
        "speedup vs first model",
        "fastest for",
        "above 1 is faster",
    ):
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
    assert "Per-op time: tiny_bnn.tflite, 4 threads, default kernel" in html
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
    with pytest.raises(UsageProblem, match=r"missing\.tflite: no such file"):
        bench([tmp_path / "missing.tflite"])
    with pytest.raises(UsageProblem, match="Per-op profiling needs lce_benchmark_model"):
        bench(two_models, op_profiling=True)
    with pytest.raises(UsageProblem, match="Expected runs= of at least 1, got 0"):
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


def test_an_unwritable_output_fails_before_measuring(cli, bundled_model, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out, cause in [
        (blocker, f"cannot write to {blocker}: it is a file, not a directory"),
        (blocker / "sub", f"cannot write to {blocker / 'sub'}: a part of the path is a file"),
        (Path("/proc/bnnconvert-bench"), "cannot write to /proc/bnnconvert-bench: "),
    ]:
        code, stdout, stderr = cli("bench", str(bundled_model), "--runs", "1000", "-o", str(out))
        assert code == 2
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {cause}"), stderr
        assert stdout == ""  # nothing measured: the check came first


def test_bench_and_inspect_word_the_same_errors_alike(cli, bundled_model, tmp_path):
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(bundled_model.read_bytes()[:20_000])
    for model in (truncated, tmp_path / "missing.tflite", tmp_path):
        bench_run = cli("bench", str(model), "-o", str(tmp_path / "out"))
        inspect_run = cli("inspect", str(model))
        assert bench_run == inspect_run and bench_run[0] == 2, (bench_run, inspect_run)
        assert bench_run[2].count("\n") == 1
    assert "(truncated?)" in cli("inspect", str(truncated))[2]


def test_two_files_of_the_same_name_are_told_apart(bundled_model, tmp_path):
    paths = []
    for folder in ("phone", "board"):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "model.tflite")
        paths[-1].write_bytes(bundled_model.read_bytes())
    result = bench(paths, runs=2, autotune=False)
    assert [m.name for m in result.models] == ["phone/model.tflite", "board/model.tflite"]
    assert "board/model.tflite" in render_markdown(result)


def test_export_json_beside_the_model_sets_the_runtime(bundled_model, tmp_path):
    """The bundled export records arm64 (default kernel); an x86_64 export records indirect."""
    from bnnconvert.targets import target

    model = tmp_path / "x86" / "model.tflite"
    model.parent.mkdir()
    model.write_bytes(bundled_model.read_bytes())
    report = json.loads((bundled_model.parent / "export.json").read_text())
    report["target"] = target("x86_64").to_dict()
    (model.parent / "export.json").write_text(json.dumps(report))
    result = bench(str(model), runs=2, autotune=False)  # a str is one model
    assert result.configs == [InterpreterConfig(1, indirect_bgemm=True, xnnpack=False)]
    assert result.notes == [
        "model.tflite: export.json records target x86_64 (indirect kernel, no XNNPACK), "
        "this model's baseline"
    ]
    tuned = bench(model, runs=2, threads=1)  # autotuning sweeps; the export is the baseline
    assert len(tuned.configs) == 4
    assert tuned.baseline(0).config == InterpreterConfig(1, indirect_bgemm=True, xnnpack=False)
    assert tuned.baseline_label.startswith("the settings export.json records beside the model")
    assert bench(str(model), runs=2, autotune=False, kernel="default").configs == [
        InterpreterConfig(1, indirect_bgemm=False, xnnpack=False)
    ]
    stale = json.loads((model.parent / "export.json").read_text())
    stale["sha256"] = "0" * 64  # an export.json for another file is ignored
    (model.parent / "export.json").write_text(json.dumps(stale))
    assert bench(model, runs=2, autotune=False).configs == [InterpreterConfig(1, False, False)]


def test_ctrl_c_keeps_what_was_measured(bundled_model, tmp_path):
    from bnnconvert.bench import BenchInterrupted

    def press_ctrl_c(text: str) -> None:
        if text.startswith("round 3/"):
            raise KeyboardInterrupt

    out = tmp_path / "out"
    with pytest.raises(BenchInterrupted) as caught:
        bench(bundled_model, runs=1000, autotune=False, output_dir=out, progress=press_ctrl_c)
    assert caught.value.exit_code == 130
    assert str(caught.value) == "interrupted; kept the 3 round(s) measured before that"
    data = json.loads((out / "bench.json").read_text())
    assert not data["complete"] and data["problem"] == "interrupted (Ctrl-C)"
    assert len(data["measurements"][0]["samples_us"]) == 3
    assert "Incomplete:" in (out / "bench.html").read_text()


def test_sigint_to_the_cli_exits_130_with_partial_reports(bundled_model, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [
            str(CLI),
            "bench",
            str(bundled_model),
            "--runs",
            "100000",
            "--no-autotune",
            "-o",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's Ctrl-C reaches
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _runner_is_running(proc.pid):
        time.sleep(0.2)
    time.sleep(8.0)  # the runner loads LCE (seconds on a busy machine), then rounds take ms
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    lines = stderr.strip().splitlines()
    assert lines[-1].startswith("error: interrupted; kept the ") and "round(s)" in lines[-1]
    data = json.loads((out / "bench.json").read_text())
    assert data["problem"] == "interrupted (Ctrl-C)"
    assert len(data["measurements"][0]["samples_us"]) >= 1
    assert "median ms" in stdout  # what was measured is shown too


def _runner_is_running(pid: int) -> bool:
    """Whether bnnconvert's runner runs as a child of ``pid``."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if b"bnnconvert_runner.py" in cmdline and int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                return True
    return False


def test_reports_that_cannot_be_written_at_the_end_keep_the_result(bundled_model, tmp_path):
    from bnnconvert.bench import ReportsNotWritten

    out = tmp_path / "out"
    out.mkdir()

    def take_the_folder_away(text: str) -> None:
        if text.startswith("round 1/") and out.is_dir():
            out.rmdir()
            out.write_text("a file where the folder was")

    with pytest.raises(ReportsNotWritten) as caught:
        bench(bundled_model, runs=3, autotune=False, output_dir=out, progress=take_the_folder_away)
    assert str(caught.value).startswith(f"could not write the reports to {out}: ")
    assert caught.value.result.complete
    assert len(caught.value.result.measurements[0].samples_us) == 3


def test_result_reprs_are_short(bundled_model):
    result = bench(bundled_model, runs=2, autotune=False)
    text = repr(result)
    assert text.startswith("<BenchResult local: 1 model(s) × 1 config(s), complete, fastest ")
    assert len(text) < 120 and "samples" not in text
    assert repr(result.measurements[0]).startswith("<Measurement model 0, 1 thread, default")


def _synthetic(names: list[str], configs: list[InterpreterConfig]) -> BenchResult:
    """A measured result without measuring: steady timings, the second model 2× slower."""
    measurements = [
        Measurement(i, c, [1000.0 * (i + 1) * (1 + k) + j for j in range(20)])
        for i in range(len(names))
        for k, c in enumerate(configs)
    ]
    return BenchResult(
        device=DeviceInfo("local", "local", cores=2),
        method="python-runner",
        models=[ModelFile(f"/m/{n}", n, "0" * 64, 1024) for n in names],
        configs=configs,
        measurements=measurements,
        warmup=3,
        runs=20,
        autotune=len(configs) > 1,
        op_profiling=False,
        tools={},
        started_at="2026-01-01T00:00:00+00:00",
        finished_at="2026-01-01T00:00:10+00:00",
    )


def test_one_model_in_one_configuration_has_no_comparison_columns():
    from bnnconvert.bench.report_md import latency_table, legend

    result = _synthetic(["model.tflite"], [InterpreterConfig(1, True, False)])
    header, rows = latency_table(result)
    assert header == [
        "configuration", "median ms", "p10 ms", "p90 ms", "min ms", "std ms", "CV", "n"
    ]  # fmt: skip
    assert rows == [
        ["1 thread, indirect kernel, no XNNPACK", "1.010", "1.002", "1.017", "1.000", "0.006",
         "0.6 %", "20"]
    ]  # fmt: skip
    assert not any("★" in item or "speedup" in item for item in legend(result))
    html = render_html(result)
    assert "speedup" not in html and "★" not in html and "<h2>Median</h2>" in html


def test_comparisons_say_their_convention_and_define_the_baseline(tmp_path):
    from bnnconvert.bench import LCE_DEFAULT
    from bnnconvert.bench.report_md import latency_table, legend

    indirect = InterpreterConfig(1, True, False)
    names = ["phones/pixel-4a/exported/model.tflite", "boards/raspberry-pi-5/model.tflite"]
    result = _synthetic(names, [LCE_DEFAULT, indirect])
    header, rows = latency_table(result)
    assert header[-2:] == ["speedup vs baseline", "speedup vs first model"]
    # the first configuration (LCE's default) is the faster here: 1 ms vs 2 ms
    assert rows[0][:2] == [names[0], "1 thread, default kernel, no XNNPACK ★"]
    assert rows[1][-2:] == ["0.50×", "–"] and rows[2][-2:] == ["1.00×", "0.50×"]
    items = legend(result)
    assert "speedup = reference median ÷ this median: above 1 is faster" in items
    assert "baseline = LCE's default configuration (1 thread, default kernel, no XNNPACK)" in items
    html = render_html(result)
    assert "How to read this page" in html and "…" not in html  # labels fit, none cut
    for name in names:
        assert f"{name}</text>" in html
    page = tmp_path / "bench.html"
    page.write_text(html)
    _assert_renders(page, tmp_path / "shot.png")
