"""ONNX export: PyTorch BNNs through ``bnnconvert export MODEL.onnx`` beside the Keras route.

    .venv/bin/pip install -e ".[torch]"
    .venv/bin/python benchmarks/onnx_export.py [--runs 10] [--skip-224]

Rows:

1. the bundled PyTorch digits BinaryDenseNet (``models/torch_digits/model.onnx``);
2. a BinaryDenseNet28-shaped PyTorch model at 224x224 (1000 classes; the
   published architecture: 7x7/2 stem, BN, ReLU, 3x3/2 max-pool, dense layers
   BN -> sign -> binary 3x3 conv -> concat, transitions BN -> max-pool -> ReLU
   -> 1x1 conv; weights seeded, batch norms randomised), exported with
   ``torch.onnx.export``;
3. the same architecture built in Keras/Larq (``bnnconvert.models``), saved
   as ``.keras`` and exported.

For each: the export's conversion time (LCE's converter) and total time, the
flatbuffer size, its op histogram, and the median latency of LCE's x86
interpreter (one thread, indirect binary kernel) over ``--runs`` inferences,
the models taking turns.
The last line is the latency ratio ONNX route / Keras route for BinaryDenseNet28
(same architecture, same kernels: expect about 1.0; the PyTorch model pads its
7x7/2 stem and 3x3/2 max-pool on both sides, which TensorFlow's SAME does not,
so it carries two extra ``PAD`` ops).
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from bnnconvert import _tf, models
from bnnconvert.export import export

REPO = Path(__file__).resolve().parents[1]
BUNDLED_ONNX = REPO / "models" / "torch_digits" / "model.onnx"


class DenseLayer(nn.Module):
    """BN -> sign -> binary 3x3 conv (sign of the latent weights, zero padding) -> concat."""

    def __init__(self, channels: int, growth: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, eps=1e-5)
        self.conv = nn.Conv2d(channels, growth, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sign(self.bn(x))
        return torch.cat([x, functional.conv2d(y, torch.sign(self.conv.weight), padding=1)], 1)


class TorchBinaryDenseNet(nn.Module):
    """A BinaryDenseNet variant from :data:`bnnconvert.models.SPECS`, for inputs >= 50 px."""

    def __init__(self, spec: models.BinaryDenseNetSpec, classes: int = 1000) -> None:
        super().__init__()
        channels = spec.initial_filters
        layers: list[nn.Module] = [
            nn.Conv2d(3, channels, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
        for block, depth in enumerate(spec.layers):
            for _ in range(depth):
                layers.append(DenseLayer(channels, spec.growth_rate))
                channels += spec.growth_rate
            if block < len(spec.layers) - 1:
                width = int(round((channels // spec.reductions[block]) / 32) * 32)
                layers += [
                    nn.BatchNorm2d(channels),
                    nn.MaxPool2d(2, 2),
                    nn.ReLU(),
                    nn.Conv2d(channels, width, 1, bias=False),
                ]
                channels = width
        layers += [nn.BatchNorm2d(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.classifier(self.features(x)), dim=1)


def randomize_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Trained-looking statistics (as :func:`bnnconvert.models.randomize_batchnorm`)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                sign = rng.choice([-1.0, 1.0], size=n, p=[0.2, 0.8])
                module.weight.copy_(torch.from_numpy(sign * rng.uniform(0.5, 1.5, n)))
                module.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.3, n)))
                module.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n)))


def torch_binarydensenet28_onnx(path: Path) -> Path:
    torch.manual_seed(0)
    model = TorchBinaryDenseNet(models.SPECS["binarydensenet28"])
    randomize_batch_norms(model)
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 3, 224, 224),),
        buffer,
        input_names=["image"],
        output_names=["probabilities"],
        opset_version=17,
        dynamo=False,
    )
    path.write_bytes(buffer.getvalue())
    return path


def keras_binarydensenet28(path: Path) -> Path:
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    model = models.binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    models.randomize_batchnorm(model)
    model.save(path)
    return path


def latencies_ms(flatbuffers: list[bytes], runs: int) -> list[float]:
    """Median single-image latency of each model, LCE interpreter, 1 thread, indirect kernel.

    The models take turns, one inference each per round, so load from other
    processes on a shared machine falls on all of them alike.
    """
    interpreters = [
        _tf.lce_interpreter(fb, num_threads=1, use_indirect_bgemm=True) for fb in flatbuffers
    ]
    rng = np.random.default_rng(0)
    inputs = [
        rng.uniform(0, 1, (1, *it.input_shapes[0][1:])).astype(np.float32) for it in interpreters
    ]
    times: list[list[float]] = [[] for _ in interpreters]
    for interpreter, x in zip(interpreters, inputs, strict=True):
        interpreter.predict(x)  # warm-up
    for _ in range(runs):
        for interpreter, x, seconds in zip(interpreters, inputs, times, strict=True):
            started = time.perf_counter()
            interpreter.predict(x)
            seconds.append(time.perf_counter() - started)
    return [statistics.median(seconds) * 1000 for seconds in times]


def measure(name: str, checkpoint: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    result = export(checkpoint, target="arm64", output_dir=out, validate_samples=2)
    total = time.perf_counter() - started
    return {
        "name": name,
        "conversion_s": result.conversion_seconds,
        "export_s": total,
        "kib": result.model_bytes / 1024,
        "ops": result.op_counts,
        "flatbuffer": result.model_path.read_bytes(),
        "parity": "passed" if result.parity and result.parity.passed else "FAILED",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed inferences per model")
    parser.add_argument("--skip-224", action="store_true", help="only the bundled model")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows.append(measure("torch digits (ONNX)", BUNDLED_ONNX, work / "digits"))
        if not args.skip_224:
            onnx_path = torch_binarydensenet28_onnx(work / "bdn28.onnx")
            rows.append(measure("BinaryDenseNet28 224 (ONNX)", onnx_path, work / "o"))
            keras_path = keras_binarydensenet28(work / "bdn28.keras")
            rows.append(measure("BinaryDenseNet28 224 (Keras)", keras_path, work / "k"))
    latencies = latencies_ms([r["flatbuffer"] for r in rows], args.runs)
    for row, latency in zip(rows, latencies, strict=True):
        row["latency_ms"] = latency

    print("| model | conversion s | export s | KiB | LCE latency ms | parity | ops |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ops = ", ".join(f"{op} {n}" for op, n in r["ops"].items())
        print(
            f"| {r['name']} | {r['conversion_s']:.1f} | {r['export_s']:.1f} | {r['kib']:.0f} | "
            f"{r['latency_ms']:.1f} | {r['parity']} | {ops} |"
        )
    if len(rows) == 3:
        print(
            f"\nlatency ratio ONNX / Keras (BinaryDenseNet28): "
            f"{rows[1]['latency_ms'] / rows[2]['latency_ms']:.3f}"
        )


if __name__ == "__main__":
    main()
