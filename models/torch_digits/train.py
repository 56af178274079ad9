"""Reproduce the bundled PyTorch digits BinaryDenseNet from scratch, exported to ONNX.

    .venv/bin/pip install -e ".[torch]"
    .venv/bin/python models/torch_digits/train.py      # writes model.onnx

The data of ``models/digits`` (the Keras one) and a network of the same
family, written in PyTorch: a float 3x3 stem with 32 filters and a 2x2
max-pool (to 16x16, a quarter of the Keras model's compute, so that training
stays within a few CPU minutes), three dense blocks of three layers
(BatchNorm -> sign -> binary 3x3 conv with 32 filters, zero padding -> concat),
transitions (BatchNorm -> max-pool 2x2 -> ReLU -> float 1x1 conv) and a head
(BatchNorm -> ReLU -> global average pool -> Linear -> softmax).

Recipe (the papers' simple one): Adam (lr 2e-3), sign with a straight-through
estimator (gradient 1 for |x| <= 1.3) on activations and latent weights, latent
weights clipped to [-1.3, 1.3], no scaling factors, no pretrained float model,
10 epochs with the learning rate decayed on a cosine, batch 32, on
scikit-learn's handwritten digits upsampled to 32x32 with the Keras model's
80/20 split (:func:`bnnconvert.digits.split`). The
network computes its binary weights as ``sign(W)`` in the forward pass, as
PyTorch BNN code does; the export folds them to +-1 constants. Prints the
held-out test accuracy of the PyTorch model and of the exported ONNX model in
ONNX Runtime.
"""

from __future__ import annotations

import argparse
import io
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from bnnconvert import digits
from bnnconvert.atomic import write_bytes

HERE = Path(__file__).resolve().parent
CLIP = 1.3
GROWTH = 32
BLOCKS = 3
LAYERS_PER_BLOCK = 3
REDUCTION = 2.0


class SignSTE(torch.autograd.Function):
    """sign(x) forward; straight-through gradient where |x| <= 1.3. Exports as ONNX ``Sign``."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return torch.sign(x)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= CLIP).to(grad.dtype)

    @staticmethod
    def symbolic(g: torch.Graph, x: torch.Value) -> torch.Value:
        return g.op("Sign", x)


class BinaryConv2d(nn.Conv2d):
    """3x3 conv of sign(input) with sign(weight), zero padding, no bias, no scaling."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(SignSTE.apply(x), SignSTE.apply(self.weight), padding=1)


class DenseLayer(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5)
        self.bconv = BinaryConv2d(channels, GROWTH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.bconv(self.bn(x))], dim=1)


class Transition(nn.Sequential):
    def __init__(self, channels: int, width: int) -> None:
        super().__init__(
            nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5),
            nn.MaxPool2d(2, 2),
            nn.ReLU(),
            nn.Conv2d(channels, width, 1, bias=False),
        )


class BinaryDenseNetDigits(nn.Module):
    """The bundled digits BinaryDenseNet; input ``(N, 1, 32, 32)``, output class probabilities."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(1, GROWTH, 3, padding=1, bias=False), nn.MaxPool2d(2)]
        channels = GROWTH
        for block in range(BLOCKS):
            for _ in range(LAYERS_PER_BLOCK):
                layers.append(DenseLayer(channels))
                channels += GROWTH
            if block < BLOCKS - 1:
                width = round((channels // REDUCTION) / 32) * 32
                layers.append(Transition(channels, width))
                channels = width
        self.features = nn.Sequential(*layers)
        self.head_bn = nn.BatchNorm2d(channels, momentum=0.1, eps=1e-5)
        self.classifier = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = functional.relu(self.head_bn(self.features(x)))
        x = torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1)
        return torch.softmax(self.classifier(x), dim=1)

    def clip_latent_weights(self) -> None:
        with torch.no_grad():
            for module in self.modules():
                if isinstance(module, BinaryConv2d):
                    module.weight.clamp_(-CLIP, CLIP)


def onnx_bytes(model: nn.Module) -> bytes:
    """The eval-mode model as ONNX (opset 17, dynamic batch), input ``image`` NCHW."""
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 1, digits.INPUT_SIZE, digits.INPUT_SIZE),),
        buffer,
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}, "probabilities": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()

    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    torch.set_num_threads(2)
    data = load_digits()
    train_idx, test_idx = digits.split()
    x = torch.from_numpy(digits.prepare(data.images).transpose(0, 3, 1, 2).copy())
    y = torch.from_numpy(data.target.astype(np.int64))

    model = BinaryDenseNetDigits().to(memory_format=torch.channels_last)
    x = x.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.epochs)
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        order = train_idx[torch.randperm(len(train_idx), generator=generator).numpy()]
        total = 0.0
        for i in range(0, len(order), 32):
            batch = order[i : i + 32]
            loss = functional.nll_loss(torch.log(model(x[batch]) + 1e-12), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            model.clip_latent_weights()
            total += float(loss.detach()) * len(batch)
        schedule.step()
        elapsed = time.perf_counter() - start
        print(
            f"epoch {epoch + 1}/{args.epochs}: loss {total / len(order):.4f} ({elapsed:.0f} s)",
            flush=True,
        )
    seconds = time.perf_counter() - start

    model.eval()
    with torch.no_grad():
        predicted = model(x[test_idx]).argmax(1)
    accuracy = float((predicted == y[test_idx]).float().mean())
    print(f"trained in {seconds:.0f} s; held-out test accuracy {accuracy:.4f}")

    exported = onnx_bytes(model)
    import onnxruntime

    session = onnxruntime.InferenceSession(exported, providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(None, {"image": x[test_idx].numpy()})
    onnx_accuracy = float((probabilities.argmax(1) == y[test_idx].numpy()).mean())
    print(f"ONNX Runtime test accuracy {onnx_accuracy:.4f}")
    write_bytes(args.out / "model.onnx", exported)


if __name__ == "__main__":
    main()
