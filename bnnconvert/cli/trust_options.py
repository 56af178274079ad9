"""``--trust-checkpoint`` and ``--custom-objects``, shared by ``export`` and ``validate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from bnnconvert.cli import output

TrustCheckpoint = Annotated[
    bool,
    typer.Option(
        "--trust-checkpoint",
        help="Load through Keras's own unsafe loader: Lambda layers, custom objects and "
        "SavedModel graphs in the checkpoint RUN. Only for files you trust.",
    ),
]
CustomObjects = Annotated[
    Path | None,
    typer.Option(
        "--custom-objects",
        help="Python file whose classes/functions the checkpoint names "
        "(imported; needs --trust-checkpoint).",
    ),
]


def warn_if_trusted(trust: bool) -> None:
    """Print the one-line warning that ``--trust-checkpoint`` lets checkpoint code run."""
    if trust:
        from bnnconvert.checkpoint import TRUST_WARNING

        output.note(f"warning: {TRUST_WARNING}")
