"""Lossy exports on few samples: a verdict consistent with the per-layer diagnosis."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import BUNDLED

from bnnconvert import _tf, checkpoint
from bnnconvert.export import export
from bnnconvert.passes import OptimizeOptions
from bnnconvert.validate import quick_check, validate
from bnnconvert.validation.outputs import compare_output, consistent_count


@pytest.fixture(scope="module")
def int8_digits(tmp_path_factory):
    """The bundled model in full int8, and the test split reordered: a differing sample first."""
    folder = tmp_path_factory.mktemp("digits-int8")
    exported = export(BUNDLED, output_dir=folder, optimize=OptimizeOptions(int8_activations=True))
    model = checkpoint.load(BUNDLED).model
    with np.load(BUNDLED / "test_split.npz") as split:
        x, y = split["x"], split["y"]
    interpreter = _tf.lce().testing.Interpreter(exported.model_path.read_bytes())
    ours = np.concatenate([interpreter.predict(x[i : i + 1]) for i in range(len(x))])
    differ = np.flatnonzero(model.predict(x, verbose=0).argmax(1) != ours.argmax(1))
    assert 1 <= len(differ) <= 3  # 99.7 % top-1 agreement on the 360 samples
    order = np.concatenate([differ[:1], np.delete(np.arange(len(x)), differ)])
    return model, exported, x[order], y[order]


def test_a_few_samples_with_one_quantization_flip_pass_with_the_counts(int8_digits, tmp_path):
    model, exported, x, y = int8_digits
    data = tmp_path / "d.npz"
    np.savez(data, x=x[:48], y=y[:48])
    result = validate(BUNDLED, exported.model_path, data=data, keras_model=model, workers=0)
    assert result.lossy and result.top1_agreement == pytest.approx(47 / 48)
    assert (result.verdict, result.passed, result.failures) == ("pass", True, [])
    assert result.judged_by_layers == (
        "too few samples to judge a lossy export by top-1 agreement (48 < 50; "
        "1 of 48 differ, within chance at the lossy limits): every "
        "layer is within its quantization tolerance in isolation, so the differences come "
        "from int8 quantization"
    )


def test_export_quick_check_uses_the_same_rule(int8_digits, tmp_path):
    model, exported, x, _ = int8_digits
    data = tmp_path / "test_split.npz"
    np.savez(data, x=x[:8])
    result = quick_check(model, exported.model_path.read_bytes(), data, samples=8)
    assert result.top1_agreement == pytest.approx(7 / 8)
    assert (result.verdict, result.passed) == ("pass", True)
    assert result.judged_by_layers.startswith(
        "too few samples to judge a lossy export by top-1 agreement (8 < 50; 1 of 8 differ,"
    )


def test_lossy_allowance_below_50_samples_is_what_chance_gives_at_2_percent():
    assert [consistent_count(n, 0.02) for n in (8, 48)] == [1, 3]
    keras = np.tile(np.eye(10, dtype=np.float32)[0], (48, 1))
    ours = keras.copy()
    ours[:3] = np.eye(10, dtype=np.float32)[1]
    report = compare_output("scores", keras, ours, None, lossy=True)
    assert report.failures == [] and [u.counts for u in report.undecided] == ["3 of 48 differ"]
    ours[3] = ours[0]
    report = compare_output("scores", keras, ours, None, lossy=True)
    assert report.failures == ["top-1 agreement 91.67% (at most 3 of 48 may differ)"]
    fifty = np.concatenate([keras, keras[:2]])
    report = compare_output("scores", fifty, np.concatenate([ours, keras[:2]]), None, lossy=True)
    assert report.failures == ["top-1 agreement 92.00% (at most 1 of 50 may differ)"]
    assert report.undecided == []
    float_export = compare_output("scores", keras, ours, None, lossy=False)
    assert float_export.failures[0] == "top-1 agreement 91.67% (at most 0 of 48 may differ)"


def test_a_lossy_failure_with_every_layer_within_float_tolerance_is_explained():
    """fp16 weights: no layer exceeds even the float tolerance, yet top-1 differs too often.
    The verdict says so, naming the layer with the largest isolated error (it used to
    give no explanation at all)."""
    from bnnconvert.validate import ValidationResult, _conclude
    from bnnconvert.validation.localize import LayerReport

    result = ValidationResult("m.tflite", "ckpt", "d.npz", 360, "indirect", "", False, lossy=True)
    result.failures = ["top-1 agreement 97.22% (at most 7 of 360 may differ)"]
    result.layers = [
        LayerReport("stem", "Conv2D", "t0", "stem_bn", "value", ["CONV_2D"], 1e-4, 2e-5),
        LayerReport("head", "Dense", "t9", "head", "value", ["FULLY_CONNECTED"], 3e-4, 6e-5),
        LayerReport("b1", "QuantConv2D", "t3", "bn1", "bitpacked-signs", ["LceBconv2d"]),
    ]
    _conclude(result, fail_on_ties=False)
    assert (result.verdict, result.passed) == ("fail", False)
    assert result.notes == [
        "every layer agrees with Keras within float tolerance in isolation (largest error "
        "6e-05 of its scale, at head); the lossy export's small per-layer errors add up to "
        "the difference"
    ]
