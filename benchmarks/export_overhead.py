"""How much does ``bnnconvert export`` add to LCE's own conversion time?

For each model (BinaryDenseNet28/37/45 at 224x224 by default) this saves a
checkpoint with realistic batch-norm statistics, then alternates, run by run:

* LCE by hand: ``load_model`` + ``convert_keras_model`` + write the file;
* ``bnnconvert.export.export`` on the same checkpoint (same target).

It prints the median wall time of each, the conversion step alone, the
ratio, model sizes and op histograms. ``--quick`` exports but does not
repeat. Run:

    .venv/bin/python benchmarks/export_overhead.py [--models 28 37 45] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bnnconvert import _tf, ir, models
from bnnconvert.export import export, op_histogram

VARIANTS = {"28": "binarydensenet28", "37": "binarydensenet37", "45": "binarydensenet45"}


def lce_by_hand(ckpt: Path, out: Path) -> tuple[float, float, bytes]:
    """Load + convert + write, the way a user of LCE alone would; (total, convert, bytes)."""
    keras = _tf.keras()
    lce = _tf.lce()
    start = time.perf_counter()
    model = keras.models.load_model(ckpt, compile=False)
    convert_start = time.perf_counter()
    with _tf.quiet_native():
        flatbuffer = lce.convert_keras_model(model)
    convert_seconds = time.perf_counter() - convert_start
    out.write_bytes(flatbuffer)
    return time.perf_counter() - start, convert_seconds, flatbuffer


def ours(ckpt: Path, out: Path, parity_samples: int) -> tuple[float, float, dict]:
    # The default 8-sample parity check is verification, not conversion: it is
    # off by default (``--parity-samples N`` turns it on) so the ratio compares like with like.
    start = time.perf_counter()
    result = export(ckpt, target="arm64", output_dir=out, validate_samples=parity_samples)
    return time.perf_counter() - start, result.conversion_seconds, result.to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument(
        "--parity-samples", type=int, default=0, help="export's quick parity check (default off)"
    )
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for key in args.models:
            model = models.binary_densenet(VARIANTS[key], (args.size, args.size, 3), 1000)
            models.randomize_batchnorm(model, seed=int(key))
            ckpt = work / f"bdn{key}.keras"
            model.save(ckpt)
            lce_total, lce_conv, ours_total, ours_conv = [], [], [], []
            for _ in range(args.repeats):
                t, c, stock = lce_by_hand(ckpt, work / "stock.tflite")
                lce_total.append(t)
                lce_conv.append(c)
                t, c, report = ours(ckpt, work / f"ours{key}", args.parity_samples)
                ours_total.append(t)
                ours_conv.append(c)
            ours_bytes = (work / f"ours{key}" / "model.tflite").read_bytes()
            rows.append(
                {
                    "model": VARIANTS[key],
                    "lce_total": statistics.median(lce_total),
                    "lce_convert": statistics.median(lce_conv),
                    "ours_total": statistics.median(ours_total),
                    "ours_convert": statistics.median(ours_conv),
                    "stock_bytes": len(stock),
                    "ours_bytes": len(ours_bytes),
                    "stock_ops": op_histogram(ir.read(stock)),
                    "ours_ops": report["op_counts"],
                    "steps": report["timings"]["steps"],
                }
            )
            print(f"measured {VARIANTS[key]}", file=sys.stderr)

    print(
        f"\nExport time, median of {args.repeats} interleaved runs, {args.size}x{args.size}, "
        f"parity check samples: {args.parity_samples}\n"
    )
    header = (
        "| model | LCE load+convert+write s | bnnconvert export s | ratio "
        "| LCE convert s | our convert step s | stock KiB | ours KiB |"
    )
    print(header)
    print("|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['model']} | {r['lce_total']:.2f} | {r['ours_total']:.2f} "
            f"| {r['ours_total'] / r['lce_total']:.3f} | {r['lce_convert']:.2f} "
            f"| {r['ours_convert']:.2f} | {r['stock_bytes'] / 1024:.0f} "
            f"| {r['ours_bytes'] / 1024:.0f} |"
        )
    print("\nOur export's steps (last run, s):")
    for r in rows:
        print(f"  {r['model']}: {r['steps']}")
    print("\nOp histograms (stock LCE -> bnnconvert):")
    for r in rows:
        print(f"  {r['model']}:")
        for op in sorted(set(r["stock_ops"]) | set(r["ours_ops"])):
            print(f"    {op:16s} {r['stock_ops'].get(op, 0):4d} -> {r['ours_ops'].get(op, 0):4d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
