"""``validate``'s text for people: the per-layer table of a :class:`ValidationResult`."""

from __future__ import annotations

from collections.abc import Sequence

from bnnconvert.validate import LayerReport, share_text


def render_layers(reports: Sequence[LayerReport]) -> list[str]:
    """Plain text lines for a layer table (for the CLI)."""
    lines = []
    for r in reports:
        if r.flipped_signs is not None:
            ties = share_text(r.flipped_at_ties or 0)
            figures = f"signs flipped {share_text(r.flipped_signs)} (ties {ties})"
        else:
            figures = f"max abs {r.max_abs_error:.3g}  cos {r.cosine:.6f}"
        what = r.meaning
        if r.compared_with != r.keras_layer:
            what += f" of {r.compared_with}"
        lines.append(f"{r.cause:17}  {r.keras_layer:28} {'+'.join(r.ops):32} {what:44} {figures}")
    return lines
