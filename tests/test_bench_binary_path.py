"""The lce_benchmark_model path of ``bench`` (push, invoke, parse, interleave, clean up).

No LCE benchmark binary for this machine is at hand, so a stand-in shell
script checks the argv it gets the way the real tool would use it (the
``--graph`` file must exist) and prints the recorded-layout output from
tests/data/bench/. What this proves is bnnconvert's side of the flow, not
the tool.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from bnnconvert.bench import bench

DATA = Path(__file__).parent / "data" / "bench"


def _stand_in(tmp_path: Path, fixture: str) -> Path:
    log = tmp_path / "argv.log"
    script = tmp_path / "lce_benchmark_model"
    script.write_text(
        "#!/bin/sh\n"
        f"printf '%s\\n' \"$*\" >> {shlex.quote(str(log))}\n"
        'case "$1" in --graph=*) ;; *) echo "ERROR: --graph must come first" >&2; exit 1;; esac\n'
        'test -f "${1#--graph=}" || { echo "ERROR: no such model: ${1#--graph=}" >&2; exit 1; }\n'
        f"cat {shlex.quote(str(DATA / fixture))}\n"
    )
    script.chmod(0o755)
    return script


def test_binary_path_interleaves_invocations_and_reads_op_tables(tmp_path, tiny_bnn_tflite):
    models = []
    for name in ("a;rm -rf ~.tflite", "b.tflite"):
        (tmp_path / name).write_bytes(tiny_bnn_tflite)
        models.append(tmp_path / name)
    binary = _stand_in(tmp_path, "benchmark_model_info_percentiles_op_profiling.txt")
    result = bench(models, "local", benchmark_binary=binary, threads=2, runs=6, op_profiling=True)
    assert result.method == "lce_benchmark_model" and result.complete
    assert [c.threads for c in result.configs] == [1, 2]
    calls = (tmp_path / "argv.log").read_text().splitlines()
    assert len(calls) == 2 * 2 * 5  # models × thread counts × invocations
    assert all("--enable_op_profiling=true" in c and "--num_runs=2" in c for c in calls)
    # Round-robin with a rotating start: consecutive invocations change model or config.
    assert len({c for c in calls[:4]}) == 4
    for m in result.measurements:
        assert m.samples_us == [1714.6] * 5 and m.runs_per_sample == 583
        assert m.init_us == 12842 and m.op_types[0].node_type == "LceBconv2d"
    assert result.tools["benchmark_binary_sha256"]
