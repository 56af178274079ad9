"""What bnnconvert's rewrites did to a model, stored in the model itself.

A pass or rewrite that changes what a tensor means (a batch norm folded into a
threshold before a sign, a ``QuantDense`` rebuilt as a 1x1 conv) records it
in the flatbuffer's metadata entry ``bnnconvert.passes``, a UTF-8 JSON object
``{record kind: [record, ...]}``, so that whoever reads the ``.tflite`` file
later (the layer mapping, ``validate``, the audit) knows. Records name tensors
by their (unique) name, which survives tensor renumbering.

Kinds written today:

- ``"fold_sign_scale"``: ``{"threshold": name or null, "signs": name,
  "stood_for": name, "flipped_channels": [int, ...]}`` — ``threshold`` is the
  ``ADD`` output whose sign (inverted in ``flipped_channels``) is the sign of
  the batch norm's output that ``stood_for`` (the original tensor's name)
  held; ``signs`` the bitpacked ``LceQuantize`` output, with the same flips.
- ``"quantdense_as_conv"``: ``{"layer": name, "reshape_in": name,
  "reshape_out": name}`` — the Keras layer names of a ``QuantDense`` rebuilt
  as Reshape -> 1x1 ``QuantConv2D`` (same name) -> Reshape before conversion.
"""

from __future__ import annotations

import json
from typing import Any

from bnnconvert import ir

METADATA_NAME = "bnnconvert.passes"


def read_records(model: ir.Model) -> dict[str, list[dict[str, Any]]]:
    """The records stored in ``model`` (empty when there are none or they are unreadable)."""
    data = model.metadata.get(METADATA_NAME)
    if not data:
        return {}
    try:
        records = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return {}
    if not isinstance(records, dict):
        return {}
    return {
        kind: [r for r in entries if isinstance(r, dict)]
        for kind, entries in records.items()
        if isinstance(entries, list)
    }


def add_records(model: ir.Model, kind: str, records: list[dict[str, Any]]) -> None:
    """Append ``records`` of ``kind`` to ``model``'s entry (in place; nothing if empty)."""
    if not records:
        return
    stored = read_records(model)
    stored.setdefault(kind, []).extend(records)
    model.metadata[METADATA_NAME] = json.dumps(stored, sort_keys=True).encode("utf-8")


def unique_name(graph: ir.Subgraph, wanted: str, taken: set[str] | None = None) -> str:
    """``wanted``, or ``wanted#2``, ``wanted#3``... whichever no tensor of ``graph`` has yet."""
    taken = taken if taken is not None else {t.name for t in graph.tensors}
    name, k = wanted, 1
    while name in taken:
        k += 1
        name = f"{wanted}#{k}"
    taken.add(name)
    return name
