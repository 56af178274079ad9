"""Parsing ``lce_benchmark_model`` output in its old and new layouts (tests/data/bench/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bnnconvert.bench.benchmark_output import parse_benchmark_output
from bnnconvert.errors import DeviceProblem
from bnnconvert.tflite_errors import cause, explain

DATA = Path(__file__).parent / "data" / "bench"


def read(name: str) -> str:
    return (DATA / name).read_text()


def test_old_layout_with_op_profiling():
    out = parse_benchmark_output(read("benchmark_model_old_op_profiling.txt"))
    assert (out.init_us, out.first_us, out.warmup_avg_us, out.inference_avg_us) == (
        1471,
        3120,
        1809.52,
        1810.4,
    )
    assert out.warmup.count == 276 and out.warmup.avg == 1809.52
    assert out.inference.count == 552 and out.inference.std == 41 and out.inference.median is None
    assert (out.memory_kind, out.memory_init_mb, out.memory_overall_mb) == (
        "peak",
        1.89844,
        3.42578,
    )
    assert out.nodes_executed == 16
    types = {r.node_type: r for r in out.op_types}
    assert types["LceBconv2d"].count == 2 and types["LceBconv2d"].avg_ms == pytest.approx(0.534)
    assert types["LceBconv2d"].percent == pytest.approx(30.479)
    assert sum(r.percent for r in out.op_types) == pytest.approx(100, abs=0.01)
    # The initialization section's AllocateTensors table is not an op of the model.
    assert "AllocateTensors" not in types
    assert len(out.op_nodes) == 16
    first = out.op_nodes[0]
    assert (first.node_type, first.name, first.avg_ms) == (
        "CONV_2D",
        "[model/conv2d/Conv2D]:0",
        0.412,
    )


def test_new_layout_info_prefix_percentiles_and_memory():
    out = parse_benchmark_output(read("benchmark_model_info_percentiles_op_profiling.txt"))
    assert out.inference_avg_us == 1714.6 and out.init_us == 12842
    assert (out.inference.p5, out.inference.median, out.inference.p95) == (1650, 1702, 1803)
    assert out.warmup.median == 1697
    assert out.memory_kind == "delta" and out.memory_overall_mb == 3.67188
    assert out.memory_peak_monitored_mb == 7.94531
    assert [r.node_type for r in out.op_types][:2] == ["LceBconv2d", "CONV_2D"]
    assert out.op_nodes[4].node_type == "LceBconv2d" and out.op_nodes[4].first_ms == 0.254


def test_space_separated_copy_parses_the_same():
    """Logs pasted from terminals have tabs turned into spaces."""
    text = read("benchmark_model_info_percentiles_op_profiling.txt")
    spaced = "\n".join(line.expandtabs(8) for line in text.splitlines())
    a, b = parse_benchmark_output(text), parse_benchmark_output(spaced)
    assert "\t" not in spaced and a.op_types == b.op_types and a.op_nodes == b.op_nodes


def test_summary_line_alone_and_scientific_notation():
    line = (
        "Inference timings in us: Init: 1471, First inference: 41707, "
        "Warmup (avg): 32491.4, Inference (avg): 31420.6"
    )
    out = parse_benchmark_output(line)
    assert (out.init_us, out.first_us, out.warmup_avg_us, out.inference_avg_us) == (
        1471,
        41707,
        32491.4,
        31420.6,
    )
    assert out.inference is None and out.op_types == []
    big = parse_benchmark_output(
        "count=50 first=2990275 curr=2913402 min=2727568 max=3189954 avg=2.95034e+06 std=109798\n"
        "I tflite  : Inference timings in us: Init: 17187, First inference: 3512391, "
        "Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06"
    )
    assert big.inference_avg_us == 2950340.0 and big.inference.avg == 2950340.0


def test_binary_densenet28_sized_run():
    out = parse_benchmark_output(read("benchmark_model_info_binary_densenet28.txt"))
    assert out.inference.count == 12 and out.inference.median == 84951
    assert out.inference_avg_us == pytest.approx(85104.3)


def test_cut_off_output_is_a_device_problem_naming_the_last_line():
    text = read("benchmark_model_old_op_profiling.txt").split("Inference timings")[0]
    with pytest.raises(
        DeviceProblem, match=r"printed no 'Inference timings in us' line.*count=552"
    ):
        parse_benchmark_output(text)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "benchmark_model_failed_unresolved_lce_op.txt",
            "the binary does not know LCE's op LceQuantize: it is not an LCE build of "
            "benchmark_model; use lce_benchmark_model from an LCE release; it printed: "
            "Encountered unresolved custom op: LceQuantize. / "
            "Node number 1 (LceQuantize) failed to prepare.",
        ),
        (
            "benchmark_model_failed_op_version.txt",
            "the binary's TFLite is older than the model (it has no FULLY_CONNECTED version 11); "
            "use an lce_benchmark_model from the same LCE release as the converter; it printed: "
            "Didn't find op for builtin opcode 'FULLY_CONNECTED' version '11'. An older version "
            "of this builtin might be supported. Are you using an old TFLite binary with a newer "
            "model? / Registration failed.",
        ),
        (
            "benchmark_model_failed_xnnpack_delegate.txt",
            "the XNNPACK delegate could not take this model; benchmark it without that "
            "delegate; it printed: Failed to apply XNNPACK delegate.",
        ),
        (
            "lce_benchmark_model_failed_glibc.txt",
            "the binary needs GLIBC_2.34, which the device's C/C++ library lacks: it was built "
            "for a newer OS; use a build made for the device's OS (or a static one); it printed: "
            "/tmp/bnnconvert-bench-q8m2/lce_benchmark_model: /lib/aarch64-linux-gnu/libc.so.6: "
            "version `GLIBC_2.34' not found (required by /tmp/bnnconvert-bench-q8m2/"
            "lce_benchmark_model) / /tmp/bnnconvert-bench-q8m2/lce_benchmark_model: "
            "/lib/aarch64-linux-gnu/libc.so.6: version `GLIBC_2.32' not found (require...",
        ),
    ],
    ids=["unresolved-lce-op", "op-version", "xnnpack-delegate", "glibc"],
)
def test_failed_run_names_the_cause_and_quotes_the_first_errors(name, message):
    text = read(name)
    assert explain(text, binary=True) == message
    with pytest.raises(DeviceProblem) as info:
        parse_benchmark_output(text)
    assert str(info.value) == (
        f"benchmark_model printed no 'Inference timings in us' line: {message}"
    )


def test_unknown_failure_quotes_error_lines_without_guessing():
    text = "STARTING!\nERROR: tensor 3 has bad shape\nERROR: Invoke failed\nBenchmarking failed.\n"
    assert explain(text, binary=True) == "tensor 3 has bad shape / Invoke failed"
    assert explain("Segmentation fault\n", binary=True) == "Segmentation fault"


def test_logcat_copies_are_understood():
    text = (
        "05-31 10:38:42.585 22206 22206 E tflite  : Encountered unresolved custom op: LceBconv2d.\n"
    )
    assert cause(text, binary=True).startswith("the binary does not know LCE's op LceBconv2d")
