"""Latency statistics: robust summaries of a list of timings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

# Above this coefficient of variation (std / mean) a configuration is flagged
# noisy: its median still stands, but small differences to others do not.
NOISY_CV = 0.05


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile ``q`` (0-100) of already sorted values."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class LatencyStats:
    """Summary of ``n`` timings in microseconds."""

    n: int
    median_us: float
    p10_us: float
    p90_us: float
    min_us: float
    max_us: float
    mean_us: float
    std_us: float
    cv: float
    noisy: bool

    @classmethod
    def of(cls, samples_us: list[float]) -> LatencyStats:
        """Statistics of ``samples_us`` (at least one value)."""
        values = sorted(samples_us)
        n = len(values)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
        cv = std / mean if mean > 0 else 0.0
        return cls(
            n=n,
            median_us=percentile(values, 50),
            p10_us=percentile(values, 10),
            p90_us=percentile(values, 90),
            min_us=values[0],
            max_us=values[-1],
            mean_us=mean,
            std_us=std,
            cv=cv,
            noisy=cv > NOISY_CV,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
