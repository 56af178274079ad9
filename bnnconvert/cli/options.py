"""Options that several commands share, declared once so their names and help agree."""

from __future__ import annotations

from typing import Annotated

import typer

# LCE's binary GEMM kernel: one flag, one set of value names, in `validate` and `bench`.
_KERNELS = (
    "LCE's binary GEMM kernel: indirect (fast on x86; accumulates in the same order as the "
    "ARM kernels) or default (LCE's own choice for the CPU)"
)
Kernel = Annotated[
    str,
    typer.Option(
        "--kernel",
        metavar="KERNEL",
        help=_KERNELS.replace(" or default", ", default")
        + ", or reference (slow; agrees with Keras at ties).",
    ),
]
BenchKernel = Annotated[
    str | None,
    typer.Option(
        "--kernel",
        metavar="KERNEL",
        help=_KERNELS + "; fixes it, also when autotuning. [default: what export.json beside "
        "the model records, else default; autotune sweeps both]",
    ),
]
