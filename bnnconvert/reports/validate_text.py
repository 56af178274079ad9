"""``validate``'s text for people: the per-layer table of a :class:`ValidationResult`."""

from __future__ import annotations

from bnnconvert.validate import ValidationResult, checked_on, share_text

HEADER = ("result", "Keras layer", "ops", "compared as", "figures")


def render_layers(result: ValidationResult) -> list[str]:
    """Plain text lines for the layer table (for the CLI): which samples, a header, the rows.

    Columns are as wide as their longest cell (names are never cut: a cut
    name could name another layer).
    """
    rows = [HEADER]
    for r in result.layers:
        if r.flipped_signs is not None:
            ties = share_text(r.flipped_at_ties or 0)
            figures = f"signs flipped {share_text(r.flipped_signs)} (ties {ties})"
        else:
            figures = f"max abs {r.max_abs_error:.3g}  cos {r.cosine:.6f}"
        what = r.meaning
        if r.compared_with != r.keras_layer:
            what += f" of {r.compared_with}"
        rows.append((r.cause, r.keras_layer, "+".join(r.ops), what, figures))
    widths = [max(len(row[k]) for row in rows) for k in range(len(HEADER) - 1)]
    return [f"layers in isolation, {checked_on(result)}:"] + [
        "  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]])
        for row in rows
    ]
