"""What a benchmark produces: configurations, measurements, the result as data."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bnnconvert.bench.benchmark_output import BenchmarkModelOutput, OpTypeRow
from bnnconvert.bench.stats import LatencyStats
from bnnconvert.devices.base import DeviceInfo


@dataclass(frozen=True)
class InterpreterConfig:
    """One way to run a model: thread count and LCE's kernel choices.

    ``xnnpack=None`` means the benchmark binary's own default (devices only).
    """

    threads: int = 1
    indirect_bgemm: bool = False
    xnnpack: bool | None = False

    @property
    def kernel(self) -> str:
        """The binary GEMM kernel by its ``--kernel`` name: ``indirect`` or ``default``."""
        return "indirect" if self.indirect_bgemm else "default"

    @property
    def label(self) -> str:
        parts = [f"{self.threads} thread" + ("s" if self.threads != 1 else "")]
        parts.append(f"{self.kernel} kernel")
        if self.xnnpack is not None:
            parts.append("XNNPACK" if self.xnnpack else "no XNNPACK")
        return ", ".join(parts)

    @property
    def kernel_and_xnnpack(self) -> tuple[bool, bool]:
        """The settings an export records, without the thread count."""
        return self.indirect_bgemm, bool(self.xnnpack)

    @property
    def short(self) -> str:
        """Compact form for narrow tables: ``1T indirect+XNN``."""
        return f"{self.threads}T {self.kernel}" + ("+XNN" if self.xnnpack else "")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "label": self.label}


# What LCE's Python Interpreter uses when given no options.
LCE_DEFAULT = InterpreterConfig(threads=1, indirect_bgemm=False, xnnpack=False)


@dataclass
class ModelFile:
    """A benchmarked model file, identified by content.

    ``name`` is its label in reports: the file name, or the shortest tail of
    its path that tells it apart from the other models (``a/model.tflite``).
    """

    path: str
    name: str
    sha256: str
    size_bytes: int


def distinct_labels(paths: list[Path]) -> list[str]:
    """The shortest path tails (``model.tflite``, ``a/model.tflite``) that differ pairwise.

    The same file given twice keeps its full path and gets ``#2``, ``#3``... appended.
    """
    parts = [p.parts for p in paths]
    depth = [1] * len(paths)
    while True:
        labels = [str(Path(*p[-d:])) for p, d in zip(parts, depth, strict=True)]
        clashes = {i for i, a in enumerate(labels) if labels.count(a) > 1}
        growable = {i for i in clashes if depth[i] < len(parts[i])}
        if not growable:
            break
        for i in growable:
            depth[i] += 1
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if labels.count(label) > 1 and seen[label] > 1:
            labels[i] = f"{label} #{seen[label]}"
    return labels


@dataclass(repr=False)
class Measurement:
    """All timings of one model in one configuration (microseconds).

    With the Python runner each sample is one inference; with
    ``lce_benchmark_model`` (which prints no per-run times) each sample is the
    mean of ``runs_per_sample`` inferences of one invocation.
    """

    model: int
    config: InterpreterConfig
    samples_us: list[float] = field(default_factory=list)
    runs_per_sample: int = 1
    init_us: float | None = None
    first_us: float | None = None
    warmup_us: list[float] = field(default_factory=list)
    tool_runs: list[BenchmarkModelOutput] = field(default_factory=list)

    def __repr__(self) -> str:
        s = self.stats
        median = f", median {s.median_us / 1000:.3g} ms" if s else ""
        n = len(self.samples_us)
        return f"<Measurement model {self.model}, {self.config.label}: n={n}{median}>"

    @property
    def stats(self) -> LatencyStats | None:
        return LatencyStats.of(self.samples_us) if self.samples_us else None

    @property
    def op_types(self) -> list[OpTypeRow]:
        """Per-node-type times averaged over every profiled invocation, slowest first."""
        runs = [r.op_types for r in self.tool_runs if r.op_types]
        if not runs:
            return []
        totals: dict[str, list[float]] = {}
        for rows in runs:
            for row in rows:
                entry = totals.setdefault(row.node_type, [0.0, 0.0, float(row.count)])
                entry[0] += row.avg_ms / len(runs)
                entry[1] += row.percent / len(runs)
        rows = [OpTypeRow(k, int(v[2]), v[0], v[1]) for k, v in totals.items()]
        return sorted(rows, key=lambda r: -r.avg_ms)

    def to_dict(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "model": self.model,
            "config": self.config.to_dict(),
            "stats": stats.to_dict() if stats else None,
            "samples_us": self.samples_us,
            "runs_per_sample": self.runs_per_sample,
            "init_us": self.init_us,
            "first_us": self.first_us,
            "warmup_us": self.warmup_us,
            "op_types": [asdict(r) for r in self.op_types],
            "tool_runs": [r.to_dict() for r in self.tool_runs],
        }


@dataclass(repr=False)
class BenchResult:
    """Everything one ``bench`` call measured, complete or cut short.

    Speedups are always reference median ÷ this median: above 1 is faster.
    ``report_paths`` holds where ``bench(output_dir=...)`` wrote the reports.
    """

    device: DeviceInfo
    method: str  # "python-runner" or "lce_benchmark_model"
    models: list[ModelFile]
    configs: list[InterpreterConfig]
    measurements: list[Measurement]
    warmup: int
    runs: int | None
    autotune: bool
    op_profiling: bool
    tools: dict[str, str | None]
    started_at: str
    finished_at: str | None = None
    stop_reason: str | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)
    # model index -> the kernel/XNNPACK settings its export.json records (threads: 1)
    exported: dict[int, InterpreterConfig] = field(default_factory=dict)
    report_paths: dict[str, Path] = field(default_factory=dict)

    def __repr__(self) -> str:
        state = "complete" if self.complete else "incomplete"
        best = self.fastest(0) if self.models else None
        fastest = (
            f", fastest {self.models[0].name}: {best.config.short} "
            f"{best.stats.median_us / 1000:.3g} ms"
            if best is not None and best.stats is not None
            else ""
        )
        return (
            f"<BenchResult {self.device.name}: {len(self.models)} model(s) × "
            f"{len(self.configs)} config(s), {state}{fastest}>"
        )

    @property
    def complete(self) -> bool:
        return self.problem is None

    def of_model(self, model: int) -> list[Measurement]:
        return [m for m in self.measurements if m.model == model and m.samples_us]

    def get(self, model: int, config: InterpreterConfig) -> Measurement | None:
        return next((m for m in self.of_model(model) if m.config == config), None)

    def fastest(self, model: int) -> Measurement | None:
        """The configuration with the lowest median for ``model``."""
        measured = self.of_model(model)
        return min(measured, key=lambda m: m.stats.median_us) if measured else None  # type: ignore[union-attr]

    def baseline(self, model: int) -> Measurement | None:
        """The configuration others are compared with, for ``model``.

        The settings its ``export.json`` records (fewest threads among those
        measured with them), else LCE's default configuration, else the first
        configuration measured.
        """
        measured = self.of_model(model)
        wanted = self.exported.get(model)
        if wanted is not None:
            same = [m for m in measured if m.config.kernel_and_xnnpack == wanted.kernel_and_xnnpack]
            if same:
                return min(same, key=lambda m: m.config.threads)
        return self.get(model, LCE_DEFAULT) or next(iter(measured), None)

    @property
    def baseline_label(self) -> str:
        """What "baseline" means in this result, in words."""
        default = (
            f"LCE's default configuration ({LCE_DEFAULT.label})"
            if LCE_DEFAULT in self.configs
            else f"the first configuration measured ({self.configs[0].label})"
        )
        if not self.exported:
            return default
        if len(self.exported) == len(self.models) and len(set(self.exported.values())) == 1:
            config = next(iter(self.exported.values()))
            return (
                f"the settings export.json records beside the model ({config.kernel} kernel, "
                f"{'XNNPACK' if config.xnnpack else 'no XNNPACK'}; fewest threads measured)"
            )
        return f"the settings export.json records beside a model, else {default}"

    def speedup_vs_first_model(self, m: Measurement) -> float | None:
        """median(first model, same configuration) / median(m): above 1, ``m`` is faster."""
        ref = self.get(0, m.config)
        if ref is None or m.stats is None or ref.stats is None:
            return None
        return ref.stats.median_us / m.stats.median_us

    def summary(self) -> list[dict[str, Any]]:
        """Per model: fastest configuration, baseline, and speedups (above 1 is faster)."""
        rows = []
        best0 = self.fastest(0)
        for i, model in enumerate(self.models):
            best, base = self.fastest(i), self.baseline(i)
            if best is None or base is None:
                rows.append({"model": model.name, "measured": False})
                continue
            b, d = best.stats, base.stats
            assert b is not None and d is not None
            rows.append(
                {
                    "model": model.name,
                    "measured": True,
                    "fastest_config": best.config.label,
                    "fastest_median_us": b.median_us,
                    "baseline_config": base.config.label,
                    "baseline_median_us": d.median_us,
                    "speedup_vs_baseline": d.median_us / b.median_us,
                    "fastest_noisy": b.noisy,
                    "speedup_vs_first_model": (
                        best0.stats.median_us / b.median_us if best0 and best0.stats else None
                    ),
                }
            )
        return rows

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "problem": self.problem,
            "notes": self.notes,
            "exported_settings": {
                self.models[i].name: c.to_dict() for i, c in sorted(self.exported.items())
            },
            "device": self.device.to_dict(),
            "method": self.method,
            "models": [asdict(m) for m in self.models],
            "configs": [c.to_dict() for c in self.configs],
            "warmup": self.warmup,
            "runs": self.runs,
            "autotune": self.autotune,
            "op_profiling": self.op_profiling,
            "tools": self.tools,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "stop_reason": self.stop_reason,
            "summary": self.summary(),
            "measurements": [m.to_dict() for m in self.measurements],
        }
