"""Parse what TFLite's ``benchmark_model`` (and LCE's ``lce_benchmark_model``) prints.

The tool has printed three generations of output, all handled here:

- older builds: bare lines, ``count=50 first=.. curr=.. min=.. max=.. avg=.. std=..``,
  ``Inference timings in us: Init: 1471, First inference: 41707,
  Warmup (avg): 32491.4, Inference (avg): 31420.6`` and
  ``Peak memory footprint (MB): init=.. overall=..``;
- newer builds: every log line prefixed ``INFO: ``, ``p5=.. median=.. p95=..``
  appended to the ``count=`` lines, ``Memory footprint delta from the start
  of the tool (MB): init=.. overall=..`` and ``Overall peak memory footprint
  (MB) via periodic monitoring: ..``; Android logcat copies may carry an
  ``I tflite  : `` prefix instead;
- with ``--enable_op_profiling=true``: "Run Order" (one row per node) and
  "Summary by node type" tables, tab- or space-separated, with or without a
  ``[start]`` column.

Large values come in C++ stream notation (``2.95034e+06``). Lines that match
nothing are ignored: the tool also prints its flags, delegate notes and
warnings. A failed run is described by :func:`bnnconvert.tflite_errors.explain`.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from bnnconvert.errors import DeviceProblem
from bnnconvert.tflite_errors import explain

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_PREFIX = re.compile(r"^\s*(?:INFO:\s*|.*?\bI tflite\s*:\s*)?")
_SUMMARY = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warmup>{_NUM}), Inference \(avg\): (?P<inference>{_NUM})"
)
_STAT_FIELD = re.compile(rf"(\w+)=({_NUM})")
_MEM_PEAK = re.compile(rf"Peak memory footprint \(MB\): init=({_NUM}) overall=({_NUM})")
_MEM_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=({_NUM}) overall=({_NUM})"
)
_MEM_MONITOR = re.compile(
    rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({_NUM})"
)
_NODES_EXECUTED = re.compile(r"Number of nodes executed: (\d+)")
_TABLE_TITLE = re.compile(r"^=+ (.+?) =+$")
_REGULAR_RUNS = "Operator-wise Profiling Info for Regular Benchmark Runs"


@dataclass
class RunStats:
    """One ``count=..`` line: the tool's own statistics over a batch of runs (µs)."""

    count: int
    first: float | None = None
    curr: float | None = None
    min: float | None = None
    max: float | None = None
    avg: float | None = None
    std: float | None = None
    p5: float | None = None
    median: float | None = None
    p95: float | None = None


@dataclass
class OpTypeRow:
    """A row of "Summary by node type"."""

    node_type: str
    count: int
    avg_ms: float
    percent: float
    times_called: int | None = None


@dataclass
class OpNodeRow:
    """A row of "Run Order": one node of the graph."""

    node_type: str
    name: str
    avg_ms: float
    percent: float
    first_ms: float | None = None
    times_called: int | None = None


@dataclass
class BenchmarkModelOutput:
    """Everything bnnconvert reads from one ``benchmark_model`` run (times in µs)."""

    init_us: float
    first_us: float
    warmup_avg_us: float
    inference_avg_us: float
    inference: RunStats | None = None
    warmup: RunStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    memory_kind: str | None = None  # "peak" (older builds) or "delta" (newer)
    memory_peak_monitored_mb: float | None = None
    nodes_executed: int | None = None
    op_types: list[OpTypeRow] = field(default_factory=list)
    op_nodes: list[OpNodeRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _strip(line: str) -> str:
    return _PREFIX.sub("", line.rstrip("\r\n"), count=1).strip()


def _stats(line: str) -> RunStats | None:
    if not line.startswith("count="):
        return None
    values = {k: float(v) for k, v in _STAT_FIELD.findall(line)}
    known = {k: v for k, v in values.items() if k in RunStats.__dataclass_fields__}
    return RunStats(**{**known, "count": int(values["count"])})


def _cells(line: str) -> list[str]:
    parts = line.split("\t") if "\t" in line else re.split(r"\s{2,}", line)
    return [p.strip() for p in parts if p.strip()]


def _number(cell: str) -> float:
    return float(cell.rstrip("%"))


def _parse_table(header: list[str], rows: list[list[str]], title: str, out: BenchmarkModelOutput):
    names = [h.strip("[]").lower() for h in header]
    for cells in rows:
        if len(cells) != len(names):
            continue
        row = dict(zip(names, cells, strict=True))
        if title == "Summary by node type":
            called = row.get("times called")
            out.op_types.append(
                OpTypeRow(
                    node_type=row["node type"],
                    count=int(row["count"]),
                    avg_ms=_number(row["avg ms"]),
                    percent=_number(row["avg %"]),
                    times_called=int(called) if called is not None else None,
                )
            )
        elif title == "Run Order":
            called = row.get("times called")
            first = row.get("first")
            out.op_nodes.append(
                OpNodeRow(
                    node_type=row["node type"],
                    name=row["name"],
                    avg_ms=_number(row["avg ms"]),
                    percent=_number(row["%"]),
                    first_ms=_number(first) if first is not None else None,
                    times_called=int(called) if called is not None else None,
                )
            )


def parse_benchmark_output(text: str) -> BenchmarkModelOutput:
    """Parse the text ``benchmark_model`` printed (stdout and stderr together).

    Arguments:
        text: the complete output of one run.

    Returns:
        The summary timings, the tool's own run statistics, memory figures and,
        when op profiling was on, the per-node-type and per-node tables of the
        regular (timed) runs.

    Raises:
        DeviceProblem: the output has no "Inference timings in us" line (the
            tool failed or was cut off); the message names the cause when it is
            a known one (:func:`bnnconvert.tflite_errors.explain`) and quotes the
            first ``ERROR:`` lines, or the last line.
    """
    lines = [_strip(line) for line in text.splitlines()]
    summary = None
    stats: list[RunStats] = []
    out_fields: dict[str, Any] = {}
    for line in lines:
        if summary is None and (m := _SUMMARY.search(line)):
            summary = m
        elif summary is None and (s := _stats(line)):
            stats.append(s)
        elif m := _MEM_PEAK.search(line):
            out_fields.update(memory_init_mb=float(m[1]), memory_overall_mb=float(m[2]))
            out_fields["memory_kind"] = "peak"
        elif m := _MEM_DELTA.search(line):
            out_fields.update(memory_init_mb=float(m[1]), memory_overall_mb=float(m[2]))
            out_fields["memory_kind"] = "delta"
        elif m := _MEM_MONITOR.search(line):
            out_fields["memory_peak_monitored_mb"] = float(m[1])
    if summary is None:
        raise DeviceProblem(
            f"benchmark_model printed no 'Inference timings in us' line: "
            f"{explain(text, binary=True)}"
        )
    out = BenchmarkModelOutput(
        init_us=float(summary["init"]),
        first_us=float(summary["first"]),
        warmup_avg_us=float(summary["warmup"]),
        inference_avg_us=float(summary["inference"]),
        warmup=stats[0] if len(stats) >= 2 else None,
        inference=stats[-1] if stats else None,
        **out_fields,
    )
    _parse_profiling(lines, out)
    return out


def _parse_profiling(lines: list[str], out: BenchmarkModelOutput) -> None:
    try:
        start = next(i for i, line in enumerate(lines) if _REGULAR_RUNS in line)
    except StopIteration:
        return
    title = None
    header: list[str] | None = None
    rows: list[list[str]] = []
    for line in [*lines[start + 1 :], ""]:
        if m := _NODES_EXECUTED.search(line):
            out.nodes_executed = int(m[1])
        if m := _TABLE_TITLE.match(line):
            title, header, rows = m[1], None, []
        elif title and line.startswith("["):
            header = _cells(line)
        elif title and header and line:
            rows.append(_cells(line))
        elif title and header:  # a blank line ends a table
            _parse_table(header, rows, title, out)
            title, header, rows = None, None, []
