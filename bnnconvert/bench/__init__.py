"""Latency benchmarks of LCE flatbuffers on the host, phones (adb) and boards (ssh).

``bench(models, device=..., output_dir=...)`` measures, returns a
:class:`BenchResult` and (with ``output_dir``) writes ``bench.json``,
``bench.md`` and ``bench.html``, as the command line does;
``write_reports(result, outdir)`` writes them for a result at hand.
"""

from bnnconvert.bench.measure import (
    BenchIncomplete,
    BenchInterrupted,
    ReportsNotWritten,
    bench,
    host_autotune_configs,
    thread_sweep,
)
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
    "BenchInterrupted",
    "BenchResult",
    "InterpreterConfig",
    "Measurement",
    "ModelFile",
    "ReportsNotWritten",
    "bench",
    "host_autotune_configs",
    "thread_sweep",
    "write_reports",
]
