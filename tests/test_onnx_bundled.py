"""The bundled PyTorch digits BinaryDenseNet (``models/torch_digits/model.onnx``).

Needs only ``onnx`` and ``onnxruntime`` (main dependencies), not PyTorch:
exported for arm64, every binary layer is an ``LceBconv2d``, the audit names
ONNX nodes, and on the whole test split the flatbuffer agrees on top-1 with
ONNX Runtime running the original file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bnnconvert.export import ExportResult, export
from bnnconvert.validate import validate

REPO = Path(__file__).resolve().parents[1]
BUNDLED_ONNX = REPO / "models" / "torch_digits" / "model.onnx"
BINARY_LAYERS = [f"features.{i}.bconv.Conv" for i in (2, 3, 4, 6, 7, 8, 10, 11, 12)]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> ExportResult:
    out = tmp_path_factory.mktemp("torch_digits")
    return export(BUNDLED_ONNX, target="arm64", output_dir=out)


def test_every_binary_layer_becomes_lce_bconv2d(exported: ExportResult) -> None:
    assert exported.op_counts["LceBconv2d"] == len(BINARY_LAYERS)
    binary = sorted(q.name for q in exported.audit.quantized if q.binary)
    assert binary == sorted(BINARY_LAYERS)
    assert not exported.audit.stayed_float
    assert exported.parity.passed


def test_audit_names_onnx_nodes_and_notes_sign_at_zero(exported: ExportResult) -> None:
    notes = [d for d in exported.audit.diagnostics if d.code == "onnx-sign-at-zero"]
    assert [d.layer for d in notes] == [name.replace(".Conv", ".Sign") for name in BINARY_LAYERS]
    assert notes[0].message.startswith(
        "ONNX node /features/features.2/bconv/Sign (Sign): Sign of activations gives 0 at "
        "exactly 0 (torch.sign); LCE's sign gives +1 there"
    )


def test_flatbuffer_agrees_with_onnx_runtime_on_the_whole_test_split(
    exported: ExportResult, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BNNCONVERT_CACHE", str(tmp_path))  # reference outputs computed here
    result = validate(BUNDLED_ONNX, exported.model_path)
    assert result.samples == 360
    assert result.top1_agreement == 1.0
    assert result.passed
    assert result.flatbuffer_accuracy >= 0.99
