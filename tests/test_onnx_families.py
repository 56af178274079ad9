"""PyTorch BNN families, exported with ``torch.onnx.export``, through ``bnnconvert export``.

Each model is written the way its family's PyTorch code writes it (the sign as
``torch.sign``, a straight-through detach trick, Bi-Real's polynomial
estimator or ``torch.where``; weights binarized in ``forward`` from a latent
parameter, with or without a per-channel scale), given realistic batch-norm
statistics, exported, converted with the real LCE converter and checked by
export's parity check against ONNX Runtime. Every binary conv must become an
``LceBconv2d``. Needs the ``torch`` extra (CI installs it: ``./setup.sh --test``).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional

from bnnconvert import ir
from bnnconvert.export import export
from bnnconvert.validate import validate

pytestmark = [pytest.mark.torch, pytest.mark.slow]

SIZE = 16


def ste_sign(x: torch.Tensor) -> torch.Tensor:
    """The detach trick: forward sign(x), backward identity (exported as Sub/Sign/Add)."""
    return x + (torch.sign(x) - x).detach()


def bireal_sign(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's ApproxSign: a piecewise polynomial backward, sign forward."""
    lt = (x < -1).float()
    mid_neg = ((x >= -1) & (x < 0)).float()
    mid_pos = ((x >= 0) & (x < 1)).float()
    poly = (
        -lt + (2 * x + x * x) * mid_neg + (2 * x - x * x) * mid_pos + (1 - lt - mid_neg - mid_pos)
    )
    return torch.sign(x).detach() - poly.detach() + poly


def where_sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, torch.tensor(1.0), torch.tensor(-1.0))


class BinaryConv(nn.Conv2d):
    """Conv of sign(input) with sign(W), optionally times mean|W| per output channel."""

    def __init__(
        self, cin: int, cout: int, *, stride: int = 1, scaled: bool = False, sign=torch.sign
    ):
        super().__init__(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.scaled = scaled
        self.sign = sign

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.sign(self.weight)
        if self.scaled:
            w = w * self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return functional.conv2d(self.sign(x), w, stride=self.stride, padding=1)


class RPReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(1, channels, 1, 1) * 0.2)
        self.prelu = nn.PReLU(channels, init=0.2)
        self.zeta = nn.Parameter(torch.randn(1, channels, 1, 1) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(x - self.gamma) + self.zeta


class RSign(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.randn(1, channels, 1, 1) * 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ste_sign(x + self.bias)


def head(channels: int, classes: int = 10) -> nn.Module:
    return nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, classes), nn.Softmax(dim=1)
    )


class PlainBNN(nn.Module):
    """Sign weights and activations everywhere but the stem and the classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv1 = BinaryConv(32, 32)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv2 = BinaryConv(32, 64)
        self.bn3 = nn.BatchNorm2d(64)
        self.head = head(64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.bn1(self.stem(x)))
        x = self.conv2(self.bn2(x))
        return self.head(functional.relu(self.bn3(x)))


class BiRealBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv = BinaryConv(cin, cout, stride=stride, scaled=True, sign=bireal_sign)
        self.bn = nn.BatchNorm2d(cout)
        self.shortcut = nn.AvgPool2d(2) if stride == 2 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x)) + self.shortcut(x)


class BiReal(nn.Module):
    """α-scaled weights, real-valued shortcuts, BN; a stride-2 block pads asymmetrically for TF."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(BiRealBlock(32, 32, 1), BiRealBlock(32, 32, 2))
        self.head = head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class ReActBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.rsign = RSign(channels)
        self.conv = BinaryConv(channels, channels, scaled=True, sign=lambda x: x)
        self.bn = nn.BatchNorm2d(channels)
        self.rprelu = RPReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rprelu(self.bn(self.conv(self.rsign(x))) + x)


class ReActNet(nn.Module):
    """RSign (learnable threshold, detach STE), α-scaled weights, RPReLU, residuals."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32))
        self.blocks = nn.Sequential(ReActBlock(32), ReActBlock(32))
        self.head = head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class XnorNet(nn.Module):
    """α per output channel, torch.where sign, and XNOR-Net's input scaling K (stays float)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv1 = BinaryConv(32, 32, scaled=True, sign=where_sign)
        self.bn2 = nn.BatchNorm2d(32)
        self.conv2 = BinaryConv(32, 32, scaled=True, sign=where_sign)
        self.bn3 = nn.BatchNorm2d(32)
        self.head = head(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.stem(x))
        k = functional.avg_pool2d(x.abs().mean(dim=1, keepdim=True), 3, stride=1, padding=1)
        x = self.bn2(self.conv1(x) * k)
        x = self.bn3(self.conv2(x))
        return self.head(functional.relu(x))


class DenseLayer(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = BinaryConv(channels, 32, sign=ste_sign)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.conv(self.bn(x))], dim=1)


class BinaryDenseNet(nn.Module):
    """BN -> sign -> binary conv -> concat, a transition (BN, max-pool, ReLU, 1x1 conv), head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(32), DenseLayer(64))
        self.transition = nn.Sequential(
            nn.BatchNorm2d(96), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(96, 64, 1, bias=False)
        )
        self.block2 = nn.Sequential(DenseLayer(64), DenseLayer(96))
        self.bn = nn.BatchNorm2d(128)
        self.head = head(128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.block2(self.transition(self.block1(self.stem(x))))
        return self.head(functional.relu(self.bn(x)))


class BinaryLinearHead(nn.Module):
    """A float conv body and a binary classifier: BN1d -> sign -> Linear(sign(W)) -> scale."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2)
        )
        self.bn = nn.BatchNorm1d(64)
        self.fc = nn.Linear(64, 10, bias=False)
        self.scale = nn.Parameter(torch.rand(10) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sign(self.bn(torch.flatten(self.body(x), 1)))
        logits = functional.linear(x, torch.sign(self.fc.weight)) * self.scale
        return torch.softmax(logits, dim=1)


def realistic_batch_norms(model: nn.Module, seed: int = 0) -> None:
    """Trained-looking statistics: gammas of both signs, non-zero betas and means."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                n = module.num_features
                sign = rng.choice([-1.0, 1.0], size=n, p=[0.2, 0.8])
                module.weight.copy_(torch.from_numpy(sign * rng.uniform(0.5, 1.5, n)))
                module.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.3, n)))
                module.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))
                module.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n)))


def export_onnx(model: nn.Module, path: Path) -> Path:
    torch.manual_seed(0)
    realistic_batch_norms(model)
    buffer = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        (torch.zeros(1, 3, SIZE, SIZE),),
        buffer,
        input_names=["image"],
        output_names=["probabilities"],
        opset_version=17,
        dynamo=False,
    )
    path.write_bytes(buffer.getvalue())
    return path


SIGN_AT_ZERO = "onnx-sign-at-zero"
# family -> (model factory, LceBconv2d ops expected: one per binary conv, two for
# a stride-2 binary conv whose PyTorch padding TensorFlow's SAME cannot express,
# the ONNX import's audit findings)
FAMILIES = {
    "plain": (PlainBNN, 2, {SIGN_AT_ZERO}),
    "bireal": (BiReal, 3, {SIGN_AT_ZERO, "onnx-explicit-padding"}),
    "reactnet": (ReActNet, 2, {SIGN_AT_ZERO}),
    "xnor": (XnorNet, 2, {"onnx-float-mul"}),
    "binarydensenet": (BinaryDenseNet, 4, {SIGN_AT_ZERO}),
    "binary_linear_head": (BinaryLinearHead, 1, {SIGN_AT_ZERO}),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_exports_binary_and_matches_onnx_runtime(family: str, tmp_path: Path) -> None:
    factory, bconvs, findings = FAMILIES[family]
    torch.manual_seed(0)
    onnx_path = export_onnx(factory(), tmp_path / f"{family}.onnx")

    result = export(onnx_path, target="arm64", output_dir=tmp_path / "out", validate_samples=8)

    assert result.op_counts.get("LceBconv2d", 0) == bconvs
    assert not result.audit.stayed_float
    onnx_findings = [d for d in result.audit.diagnostics if d.code.startswith("onnx-")]
    assert {d.code for d in onnx_findings} == findings
    assert all(d.message.startswith("ONNX node /") for d in onnx_findings)
    assert result.parity is not None and result.parity.passed, result.parity.failures
    assert result.parity.top1_agreement == 1.0
    assert _constant_muls_after_bconvs(result.model_path.read_bytes()) == 0


def _constant_muls_after_bconvs(flatbuffer: bytes) -> int:
    """MULs by a constant reading an LceBconv2d's output: a scale LCE did not fuse."""
    model = ir.read(flatbuffer)
    graph = model.subgraphs[0]
    count = 0
    for op in graph.operators:
        if op.opcode != "LceBconv2d":
            continue
        for reader in ir.consumers(graph, op.outputs[0]):
            mul = graph.operators[reader]
            others = [t for t in mul.inputs if t != op.outputs[0]]
            constant = any(ir.tensor_array(model, graph, t) is not None for t in others)
            count += mul.opcode == "MUL" and constant
    return count


def quantize(x: torch.Tensor, bits: int) -> torch.Tensor:
    """DoReFa/PACT-style k-bit quantizer of [0, 1] (exported as Clip, Mul, Round, Div)."""
    levels = 2**bits - 1
    return torch.round(torch.clamp(x, 0, 1) * levels) / levels


class ActivationQuantizer(nn.Module):
    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantize(x, self.bits)


class MultiBitThenBinary(nn.Module):
    """A 2-bit activation quantizer before a conv with 2-bit weights, then a binary conv."""

    def __init__(self) -> None:
        super().__init__()
        self.q = ActivationQuantizer(2)
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.binary = BinaryConv(8, 8)
        self.bn2 = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = quantize(torch.tanh(self.conv.weight) * 0.5 + 0.5, 2) * 2 - 1
        x = self.bn(functional.conv2d(self.q(x), w, padding=1))
        x = self.bn2(self.binary(x))
        logits = self.fc(torch.flatten(functional.adaptive_avg_pool2d(x, 1), 1))
        return torch.softmax(logits, dim=1)


def test_multibit_quantizer_stays_float_beside_a_binary_conv(tmp_path: Path) -> None:
    torch.manual_seed(0)
    onnx_path = export_onnx(MultiBitThenBinary(), tmp_path / "multibit.onnx")

    result = export(onnx_path, target="arm64", output_dir=tmp_path / "out", validate_samples=8)

    assert result.op_counts.get("LceBconv2d", 0) == 1
    assert result.op_counts.get("ROUND", 0) == 1
    assert result.op_counts.get("CONV_2D", 0) == 1
    quantizer = [d for d in result.audit.diagnostics if d.code == "onnx-multibit-quantizer"]
    assert [d.message for d in quantizer] == [
        "ONNX node /q/Round (Round): a k-bit quantizer (4 levels) stays float; LCE binarizes only "
        "sign (two-level) activations and weights"
    ]
    assert quantizer[0].fix == (
        "to make this layer binary use torch.sign with a straight-through estimator"
    )
    assert result.parity is not None and result.parity.passed, result.parity.failures
    # pixels spread over and beyond the quantizer's [0, 1]; none rounds from exactly k + 0.5
    x = np.random.default_rng(1).uniform(-0.25, 1.25, (32, SIZE, SIZE, 3)).astype(np.float32)
    assert not np.any(np.modf(np.clip(x, 0, 1) * 3)[0] == 0.5)
    np.savez(tmp_path / "data.npz", x=x)
    report = validate(onnx_path, result.model_path, data=tmp_path / "data.npz")
    assert report.passed and report.verdict == "pass", report.verdict
