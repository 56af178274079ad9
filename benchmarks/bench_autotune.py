"""LCE's default interpreter configuration vs the one `bnnconvert bench` autotuning picks.

For each BinaryDenseNet variant at 224×224 (random weights: timing does not
depend on them), in one run of this script:

1. convert the Keras model with stock LCE (``convert_keras_model``);
2. autotune: sweep bgemm kernel × XNNPACK × threads, interleaved run by run,
   and take the configuration with the lowest median;
3. confirm: time LCE's default configuration (1 thread, default bgemm, no
   XNNPACK) and the picked one again, interleaved, with fresh samples (the
   sweep's own numbers would favour whichever configuration got lucky).

Prints the sweep and a table of medians and ratios from step 3.

    .venv/bin/python benchmarks/bench_autotune.py --models 28 --runs 10
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bnnconvert import _tf
from bnnconvert.bench import LCE_DEFAULT, bench, host_autotune_configs
from bnnconvert.bench.report_md import ms
from bnnconvert.models import binary_densenet

VARIANTS = {"28": "binarydensenet28", "37": "binarydensenet37", "45": "binarydensenet45"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="28,37,45", help="subset of 28,37,45")
    parser.add_argument("--runs", type=int, default=10, help="timed runs per configuration")
    parser.add_argument("--sweep-runs", type=int, default=5, help="runs per config in the sweep")
    parser.add_argument("--max-threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args(argv)
    variants = [v.strip() for v in args.models.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"expected --models among 28,37,45, got {','.join(unknown)}")

    lce = _tf.lce()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench_autotune-") as tmp:
        for v in variants:
            name = VARIANTS[v]
            start = time.perf_counter()
            flatbuffer = lce.convert_keras_model(binary_densenet(name, (224, 224, 3), 1000))
            path = Path(tmp) / f"{name}.tflite"
            path.write_bytes(flatbuffer)
            print(f"{name}: converted in {time.perf_counter() - start:.0f} s, "
                  f"{len(flatbuffer) / 2**20:.2f} MiB", flush=True)  # fmt: skip

            configs = host_autotune_configs(args.max_threads or os.cpu_count() or 1)
            sweep = bench([path], configs=configs, runs=args.sweep_runs, warmup=args.warmup)
            print(f"  sweep ({args.sweep_runs} runs each, interleaved):")
            for m in sorted(sweep.measurements, key=lambda m: m.stats.median_us):
                s = m.stats
                print(f"    {m.config.label:<40} median {ms(s.median_us):>9} ms  "
                      f"p10–p90 {ms(s.p10_us)}–{ms(s.p90_us)}  CV {s.cv:.0%}")  # fmt: skip
            picked = sweep.fastest(0).config
            confirm_configs = [LCE_DEFAULT] if picked == LCE_DEFAULT else [LCE_DEFAULT, picked]
            confirm = bench([path], configs=confirm_configs, runs=args.runs, warmup=args.warmup)
            base = confirm.get(0, LCE_DEFAULT).stats
            best = confirm.get(0, picked).stats
            rows.append((name, picked.label, base, best))

    print()
    print("| model | LCE default median ms (p10–p90) | autotuned config | autotuned median ms "
          "(p10–p90) | speedup |")  # fmt: skip
    print("|---|---|---|---|---|")
    for name, label, base, best in rows:
        print(
            f"| {name} | {ms(base.median_us)} ({ms(base.p10_us)}–{ms(base.p90_us)}) | {label} | "
            f"{ms(best.median_us)} ({ms(best.p10_us)}–{ms(best.p90_us)}) | "
            f"{base.median_us / best.median_us:.2f}× |"
        )
    print(f"\n{args.runs} confirmation runs per configuration, interleaved; "
          "LCE default = 1 thread, default bgemm, no XNNPACK.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
