"""Latency benchmarks of LCE flatbuffers on the host, phones (adb) and boards (ssh).

``bench(models, device=...)`` measures and returns a :class:`BenchResult`;
``write_reports(result, outdir)`` writes ``bench.json``, ``bench.md`` and
``bench.html``.
"""

from bnnconvert.bench.measure import BenchIncomplete, bench, host_autotune_configs, thread_sweep
from bnnconvert.bench.reports import write_reports
from bnnconvert.bench.result import (
    LCE_DEFAULT,
    BenchResult,
    InterpreterConfig,
    Measurement,
    ModelFile,
)

__all__ = [
    "LCE_DEFAULT",
    "BenchIncomplete",
    "BenchResult",
    "InterpreterConfig",
    "Measurement",
    "ModelFile",
    "bench",
    "host_autotune_configs",
    "thread_sweep",
    "write_reports",
]
