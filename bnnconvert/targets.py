"""Export targets: what each ``--target`` changes.

LCE's converter knows two back ends, ``arm`` and ``xcore``. Our ARM and x86
targets all use LCE's ``arm`` back end, so their flatbuffers are the same
bytes; they differ in the runtime configuration we record (and that ``bench``
and ``validate`` use), because LCE's kernels differ per CPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bnnconvert.errors import UsageProblem


@dataclass(frozen=True)
class Target:
    """One ``--target`` preset."""

    name: str
    lce_target: str
    summary: str
    runtime: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "arm64",
            "arm",
            "64-bit ARM (Android phones, Raspberry Pi 4/5 with a 64-bit OS): LCE's NEON "
            "binary kernels, multithreaded.",
            {"use_indirect_bgemm": False, "use_xnnpack": False, "abi": "arm64-v8a"},
        ),
        Target(
            "armv7",
            "arm",
            "32-bit ARM (armeabi-v7a phones, 32-bit Raspberry Pi OS): same flatbuffer as "
            "arm64; LCE runs it with its 32-bit NEON binary GEMM kernels (LCE's published "
            "figures and most tuning are for aarch64).",
            {"use_indirect_bgemm": False, "use_xnnpack": False, "abi": "armeabi-v7a"},
        ),
        Target(
            "x86_64",
            "arm",
            "x86_64 hosts through LCE's interpreter: same flatbuffer as arm64; records "
            "use_indirect_bgemm=True, which is several times faster than the default "
            "portable binary GEMM on x86.",
            {"use_indirect_bgemm": True, "use_xnnpack": False, "abi": "x86_64"},
        ),
        Target(
            "xcore",
            "xcore",
            "XMOS xcore.ai through LCE's xcore back end: binary convs stay as "
            "LceQuantize -> LceDequantize -> float CONV_2D for XMOS's own tools to lower; "
            "larger, and not meant for LCE runtimes (LCE's interpreter still runs it).",
            {"use_indirect_bgemm": False, "use_xnnpack": False, "abi": "xcore"},
        ),
    )
}


def target(name: str) -> Target:
    """Look up a preset; a one-line error lists the valid names."""
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageProblem(
            f"Expected target= to be one of {', '.join(TARGETS)}, got {name!r}"
        ) from None
