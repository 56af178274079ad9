"""What a pass did: one :class:`PassStats` per pass run, JSON-able."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PassStats:
    """Counts from one pass.

    ``rewrites`` counts matched patterns that were rewritten, ``skipped``
    the matched patterns left alone, by reason. ``bytes_before`` /
    ``bytes_after`` are the sizes of bnnconvert's serialization of the graph
    around the pass, less the dead weight earlier passes left for ``cleanup``
    (filled in by :func:`bnnconvert.passes.optimize`), so they differ only by
    what the pass changed, including the constants it made dead.
    """

    name: str
    rewrites: int = 0
    ops_removed: int = 0
    ops_added: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    details: dict[str, Any] = field(default_factory=dict)
    bytes_before: int = 0
    bytes_after: int = 0

    @property
    def bytes_saved(self) -> int:
        return self.bytes_before - self.bytes_after

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rewrites": self.rewrites,
            "ops_removed": self.ops_removed,
            "ops_added": self.ops_added,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_saved": self.bytes_saved,
            "skipped": dict(self.skipped),
            **self.details,
        }
