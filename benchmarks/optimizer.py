"""Stock LCE output vs bnnconvert's graph passes, in the same run.

For each model, converts once with LCE, then builds the variants

    stock      LCE's converter output, untouched
    folded     exact passes (fold_sign_scale + cleanup): the export default
    fp16       + float16 float weights
    int8w      + int8 float weights (hybrid kernels)
    int8full   calibrated int8 float layers (+ exact passes)

and measures, in the LCE interpreter with one runtime configuration for all
(``use_indirect_bgemm=True``, 1 thread by default), the latency of one
inference: runs are interleaved (one of each variant per round, the order
rotating every round) and the median is reported, with the median over rounds of the per-round
ratio to stock (robust to load drifting on a shared machine).
Also: model size, pre-sign MULs, op histogram; for the bundled model, top-1
accuracy and agreement with stock on its test split.

    .venv/bin/python benchmarks/optimizer.py --models digits binarydensenet28 --rounds 15
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from bnnconvert import _tf, checkpoint, ir, models
from bnnconvert.passes import OptimizeOptions, int8_activations, optimize

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ("stock", "folded", "fp16", "int8w", "int8full")


def keras_model(name: str):
    """The bundled digits model, or a BinaryDenseNet at 224x224 with non-trivial BN statistics."""
    if name == "digits":
        loaded = checkpoint.load(ROOT / "models" / "digits")
        data = np.load(loaded.test_data)
        return loaded.model, data["x"], data["y"]
    keras = _tf.keras()
    model = models.binary_densenet(name, input_shape=(224, 224, 3), num_classes=1000)
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.get_weights()[0].shape[0]
            sign = rng.choice([-1.0, 1.0], size=n, p=[0.2, 0.8])
            layer.set_weights([
                (sign * rng.uniform(0.5, 1.5, n)).astype("float32"),
                rng.normal(0.0, 0.3, n).astype("float32"),
                rng.normal(0.0, 0.5, n).astype("float32"),
                rng.uniform(0.5, 2.0, n).astype("float32"),
            ])  # fmt: skip
    x = rng.normal(size=(8, 224, 224, 3)).astype(np.float32)
    return model, x, None


def pre_sign_muls(model: ir.Model) -> int:
    graph = model.subgraphs[0]
    count = 0
    for op in graph.operators:
        if op.opcode == "LceQuantize":
            p = ir.producer(graph, op.inputs[0])
            while p is not None and graph.operators[p].opcode in ("MUL", "ADD", "SUB"):
                count += graph.operators[p].opcode == "MUL"
                p = ir.producer(graph, graph.operators[p].inputs[0])
    return count


def build_variants(name: str, wanted: list[str]) -> tuple[dict[str, bytes], np.ndarray, object]:
    model, x, y = keras_model(name)
    lce = _tf.lce()
    with _tf.quiet_native():
        stock = bytes(lce.convert_keras_model(model))
    variants = {"stock": stock}
    for key, options in (
        ("folded", OptimizeOptions()),
        ("fp16", OptimizeOptions(float_weights="fp16")),
        ("int8w", OptimizeOptions(float_weights="int8")),
    ):
        if key in wanted:
            variants[key] = optimize(stock, options)[0]
    if "int8full" in wanted:
        calibration = x[: int8_activations.MAX_SAMPLES]
        rebuilt, _ = int8_activations.with_int8_float_layers(model, calibration)
        with _tf.quiet_native():
            variants["int8full"] = optimize(bytes(lce.convert_keras_model(rebuilt)))[0]
    return variants, x, y


def latency(
    variants: dict[str, bytes], x: np.ndarray, rounds: int, threads: int
) -> dict[str, list[float]]:
    """Milliseconds per inference, per variant, one entry per round."""
    interpreters = {
        k: _tf.lce_interpreter(fb, num_threads=threads, use_indirect_bgemm=True)
        for k, fb in variants.items()
    }
    sample = x[:1]
    for it in interpreters.values():  # warm-up
        it.predict(sample)
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for r in range(rounds):
        for k in order[r % len(order) :] + order[: r % len(order)]:
            start = time.perf_counter()
            interpreters[k].predict(sample)
            times[k].append((time.perf_counter() - start) * 1e3)
    return times


def accuracy(variants: dict[str, bytes], x: np.ndarray, y: np.ndarray) -> dict:
    preds = {
        k: _tf.lce_interpreter(fb, use_indirect_bgemm=True).predict(x).argmax(-1)
        for k, fb in variants.items()
    }
    return {
        k: {"top1": float((p == y).mean()), "agree_with_stock": float((p == preds["stock"]).mean())}
        for k, p in preds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits", "binarydensenet28"])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args()
    results = {}
    for name in args.models:
        print(f"# {name}", file=sys.stderr, flush=True)
        variants, x, y = build_variants(name, args.variants)
        times = latency(variants, x, args.rounds, args.threads)
        quartiles = {k: statistics.quantiles(v, n=4) for k, v in times.items()}  # q1, median, q3
        rows = {}
        for k, fb in variants.items():
            model = ir.read(fb)
            ops = Counter(op.opcode for op in model.subgraphs[0].operators)
            rows[k] = {
                "bytes": len(fb),
                "size_ratio": len(fb) / len(variants["stock"]),
                "median_ms": quartiles[k][1],
                "iqr_ms": [quartiles[k][0], quartiles[k][2]],
                # Median over rounds of (variant / stock in the same round): robust to
                # load that drifts on a shared machine.
                "latency_ratio": statistics.median(
                    t / s for t, s in zip(times[k], times["stock"], strict=True)
                ),
                "pre_sign_muls": pre_sign_muls(model),
                "ops": dict(ops.most_common()),
            }
        if y is not None:
            for k, acc in accuracy(variants, x, y).items():
                rows[k].update(acc)
        results[name] = rows
        print(render(name, rows, args), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


def render(name: str, rows: dict, args: argparse.Namespace) -> str:
    lines = [
        f"\n## {name} (LCE interpreter, indirect bgemm, {args.threads} thread(s), "
        f"median of {args.rounds} interleaved runs)\n",
        "| variant | size KiB | size × stock | median ms (IQR) | latency × stock (paired) "
        "| pre-sign MUL | top-1 | agree | ops |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for k, r in rows.items():
        ops = ", ".join(f"{op} {n}" for op, n in r["ops"].items())
        top1 = f"{100 * r['top1']:.1f} %" if "top1" in r else "–"
        agree = f"{100 * r['agree_with_stock']:.1f} %" if "top1" in r else "–"
        lines.append(
            f"| {k} | {r['bytes'] / 1024:.1f} | {r['size_ratio']:.3f} | {r['median_ms']:.2f} "
            f"({r['iqr_ms'][0]:.2f}–{r['iqr_ms'][1]:.2f}) "
            f"| {r['latency_ratio']:.3f} | {r['pre_sign_muls']} | {top1} | {agree} | {ops} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
