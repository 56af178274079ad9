"""The export audit on purpose-built tiny models, converted by the real LCE 0.16 converter.

Each case is the smallest model that shows one behaviour; what LCE does with it
was checked by converting it (see bnnconvert/audit.py's module docstring).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import _tf, models
from bnnconvert.audit import AuditResult, audit
from bnnconvert.cli.main import run
from bnnconvert.models import randomize_batchnorm
from bnnconvert.reports.audit_markdown import render

SNAPSHOT = Path(__file__).parent / "data" / "audit" / "small_model.md"


def _qconv(name: str = "qc", **overrides):
    options = {
        "filters": 32,
        "kernel_size": 3,
        "padding": "same",
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "use_bias": False,
        "name": name,
    }
    options.update(overrides)
    return _tf.larq().layers.QuantConv2D(**options)


def _build(body, channels: int = 32, name: str = "m"):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((8, 8, channels), name="x")
    model = keras.Model(x, body(x), name=name)
    randomize_batchnorm(model)
    return model


def _audit(body, channels: int = 32) -> AuditResult:
    model = _build(body, channels)
    with _tf.quiet_native():  # LCE prints its grouped-conv complaint on fd 2
        flatbuffer = _tf.lce().convert_keras_model(model)
    return audit(model, flatbuffer)


def _errors(result: AuditResult, layer: str = "qc") -> dict[str, str]:
    return {
        d.code: d.message for d in result.diagnostics if d.layer == layer and d.severity == "error"
    }


def _quant_dense(x):
    lq, keras = _tf.larq(), _tf.keras()
    y = keras.layers.Flatten(name="flat")(x)
    return lq.layers.QuantDense(
        16, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False, name="qc"
    )(y)


def _dorefa_input(x):
    return _qconv(input_quantizer=_tf.larq().quantizers.DoReFa(k_bit=2, mode="activations"))(x)


# (builder, input channels, error code, text the reason must contain, text of its fix)
NOT_BINARY = {
    "quant_dense": (
        _quant_dense,
        32,
        "quant-dense",
        "QuantDense has no binary op in LCE",
        "1x1 QuantConv2D",
    ),
    "no_input_quantizer": (  # not a first layer: its input is a feature map
        lambda x: _qconv(input_quantizer=None)(_tf.keras().layers.Conv2D(32, 1, name="pre")(x)),
        32,
        "no-input-quantizer",
        "no input_quantizer: only the weights are binary, the conv runs in float",
        "input_quantizer",
    ),
    "dorefa_input": (
        _dorefa_input,
        32,
        "unsupported-input-quantizer",
        "DoReFa (input_quantizer) is not supported by LCE",
        "ste_sign",
    ),
    "heaviside_input": (
        lambda x: _qconv(input_quantizer="ste_heaviside")(x),
        32,
        "unsupported-input-quantizer",
        "SteHeaviside (input_quantizer) is not supported by LCE",
        "ste_sign",
    ),
    "grouped_16_per_group": (
        lambda x: _qconv(groups=2)(x),
        32,
        "grouped-channels",
        "16 input channels per group (32/2): LCE's binary grouped conv needs a multiple of 32",
        "groups=1",
    ),
    "float_kernel": (
        lambda x: _qconv(kernel_quantizer=None, kernel_constraint=None)(x),
        32,
        "kernel-not-binary",
        "kernel is not ±1 (per output channel ±alpha) after no kernel_quantizer",
        "kernel_quantizer ste_sign",
    ),
    "ternary_kernel": (
        lambda x: _qconv(kernel_quantizer="ste_tern")(x),
        32,
        "kernel-not-binary",
        "after SteTern: 3 distinct values (-1, 0, 1)",
        "kernel_quantizer ste_sign",
    ),
}


@pytest.mark.parametrize("case", NOT_BINARY)
def test_layer_that_stays_float_gets_its_reason_and_fix(case) -> None:
    body, channels, code, reason, fix = NOT_BINARY[case]
    result = _audit(body, channels)
    [layer] = result.quantized
    assert layer.marked_binary and not layer.binary
    assert "LceBconv2d" not in layer.became
    assert [q.name for q in result.stayed_float] == ["qc"]
    errors = _errors(result)
    assert reason in errors[code]
    assert fix in next(d.fix for d in result.diagnostics if d.code == code)


def test_first_layer_with_only_a_kernel_quantizer_is_an_info_note() -> None:
    """Larq's tutorial: binary weights on the raw image, as Larq's docs recommend."""
    result = _audit(lambda x: _qconv("first", input_quantizer=None)(x), 3)
    [layer] = result.quantized
    assert not layer.marked_binary and not layer.binary and layer.became == ["CONV_2D"]
    assert not result.stayed_float
    [note] = result.diagnostics
    assert (note.code, note.severity, note.layer) == ("first-layer-float-input", "info", "first")
    assert note.message == (
        "first layer with binary weights reading the network input without an input_quantizer "
        "(the practice Larq recommends): it runs as a float CONV_2D with ±1 weights"
    )


# What LCE 0.16 does binarize although the issue text might suggest otherwise: the
# kernel is constant-folded, so any quantizer whose output is ±alpha per output
# channel works, and 32 channels per group is enough for a grouped binary conv.
BINARY = {
    "ste_sign": (lambda x: _qconv()(x), 32),
    "magnitude_aware_sign_kernel": (
        lambda x: _qconv(kernel_quantizer="magnitude_aware_sign")(x),
        32,
    ),
    "dorefa_1bit_kernel": (
        lambda x: _qconv(kernel_quantizer=_tf.larq().quantizers.DoReFa(k_bit=1, mode="weights"))(x),
        32,
    ),
    "approx_sign_input": (lambda x: _qconv(input_quantizer="approx_sign")(x), 32),
    "grouped_32_per_group": (lambda x: _qconv(groups=2, filters=64)(x), 64),
}


@pytest.mark.parametrize("case", BINARY)
def test_layer_that_becomes_binary_has_no_error(case) -> None:
    body, channels = BINARY[case]
    result = _audit(body, channels)
    [layer] = result.quantized
    assert layer.binary and layer.became == ["LceBconv2d"]
    assert not _errors(result)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [({}, True), ({"pad_values": 1.0}, False), ({"padding": "valid"}, False)],
)
def test_pad_values_zero_is_noted_only_for_same_padding_with_zeros(overrides, expected) -> None:
    result = _audit(lambda x: _qconv(**overrides)(x))
    notes = [d for d in result.diagnostics if d.code == "pad-values-zero"]
    assert bool(notes) is expected
    if expected:
        assert notes[0].severity == "info"
        assert "pad_values=0 costs a padding correction; pad_values=1 is free" in notes[0].message


def test_batch_norms_fused_into_bconv_or_left_before_sign() -> None:
    keras = _tf.keras()

    def body(x):
        y = _qconv("qc1")(x)
        y = keras.layers.BatchNormalization(name="bn_after_conv")(y)
        y = keras.layers.Activation("relu", name="relu")(y)
        y = keras.layers.BatchNormalization(name="bn_before_sign")(y)
        return _qconv("qc2")(y)

    result = _audit(body)
    outcome = {b.name: b for b in result.batch_norms}
    assert outcome["bn_after_conv"].outcome == "fused-into-bconv"
    assert "qc1's LceBconv2d" in outcome["bn_after_conv"].detail
    assert "post_activation_multiplier" in outcome["bn_after_conv"].detail
    assert outcome["bn_before_sign"].outcome == "before-sign"
    assert "before the sign of qc2" in outcome["bn_before_sign"].detail
    [note] = [d for d in result.diagnostics if d.code == "bn-before-sign"]
    assert note.layer == "bn_before_sign" and "fold_sign_scale" in note.fix


def test_batch_norm_on_a_graph_output_is_traced_through_structure() -> None:
    keras = _tf.keras()
    result = _audit(lambda x: keras.layers.BatchNormalization(name="bn")(_qconv()(x)))
    [bn] = result.batch_norms
    assert bn.outcome == "fused-into-bconv"
    mapping = {m.name: m for m in result.layers}
    assert mapping["bn"].mapped_by == "structure"  # the output tensor has no layer name
    assert mapping["qc"].mapped_by == "name"


def test_dominant_float_layer_is_named_with_its_share() -> None:
    keras = _tf.keras()

    def body(x):
        y = keras.layers.Conv2D(64, 3, padding="same", name="big_float")(x)
        return _qconv()(y)

    result = _audit(body)
    [top] = result.non_binary_mac_leaders
    # big_float: 8*8*64*3*3*32 MACs; qc: 8*8*32*3*3*64 binary MACs -> half each.
    assert (top.layer, top.kind, top.op_types) == ("big_float", "float", ["CONV_2D"])
    assert top.macs == 8 * 8 * 64 * 9 * 32
    assert top.share == pytest.approx(0.5)


def _int8_model():
    keras = _tf.keras()

    def body(x):
        y = keras.layers.Conv2D(32, 3, padding="same", name="stem")(x)
        y = keras.layers.BatchNormalization(name="bn")(y)
        y = _qconv("bconv", pad_values=1.0)(y)
        y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
        return keras.layers.Dense(10, name="head")(y)

    return _build(body, channels=3, name="int8")


def test_int8_layers_are_counted_as_int8_as_inspect_counts_them() -> None:
    """--int8-activations: the float layers run in int8; none of their MACs is float."""
    import numpy as np

    from bnnconvert.inspect import inspect_model
    from bnnconvert.passes.int8_activations import with_int8_float_layers

    model = _int8_model()
    x = np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 3)).astype(np.float32)
    int8_model, _ = with_int8_float_layers(model, x)
    flatbuffer = _tf.lce().convert_keras_model(int8_model)
    result = audit(model, flatbuffer)
    stem, head, bconv = 8 * 8 * 32 * 9 * 3, 32 * 10, 8 * 8 * 32 * 9 * 32
    assert result.macs == {"binary": bconv, "int8": stem + head, "int16": 0, "float": 0}
    assert result.macs == inspect_model(flatbuffer).macs
    assert result.float_macs == 0
    assert result.binary_mac_share == pytest.approx(bconv / (bconv + stem + head))
    leaders = [(m.layer, m.kind, m.op_types, m.macs) for m in result.non_binary_mac_leaders]
    assert leaders == [
        ("stem", "int8", ["CONV_2D"], stem),
        ("head", "int8", ["FULLY_CONNECTED"], head),
    ]
    layers = {m.name: m.macs for m in result.layers}
    assert layers["stem"] == {"int8": stem} and layers["bconv"] == {"binary": bconv}
    markdown = render(result)
    assert f"- MACs: {bconv:,} binary, {stem + head:,} int8, 0 float; binary share" in markdown
    assert "### Non-binary layers by MACs" in markdown and "Float layers" not in markdown
    assert f"| stem | int8 | CONV_2D | {stem:,} |" in markdown


def test_no_non_binary_macs_gives_no_leaders_and_a_full_binary_share(capsys) -> None:
    from bnnconvert.cli.audit_view import print_audit_summary

    result = _audit(lambda x: _qconv("qc2")(_qconv()(x)))
    assert result.macs == {"binary": 2 * 8 * 8 * 32 * 9 * 32, "int8": 0, "int16": 0, "float": 0}
    assert result.non_binary_mac_leaders == [] and result.binary_mac_share == 1.0
    print_audit_summary(result.to_dict())
    human = capsys.readouterr().out
    assert "2 of 2 layers marked binary, 100.0% of MACs" in human
    assert f"MACs:   {2 * 8 * 8 * 32 * 9 * 32:,} binary, 0 float; binary share 100.0%" in human
    assert "top non-binary" not in human
    assert "### Non-binary layers by MACs" not in render(result)


@pytest.mark.parametrize(
    ("variant", "channels", "binary_layers"),
    [
        ("binarydensenet_digits", 1, 9),
        pytest.param("binarydensenet28", 3, 23, marks=pytest.mark.slow),
    ],
)
def test_clean_binary_densenet_has_no_binary_layer_diagnostic(
    variant, channels, binary_layers
) -> None:
    model = models.binary_densenet(variant, input_shape=(32, 32, channels), num_classes=10)
    randomize_batchnorm(model)
    result = audit(model, _tf.lce().convert_keras_model(model))
    assert len(result.quantized) == binary_layers
    assert all(q.binary for q in result.quantized)
    assert not [d for d in result.diagnostics if d.severity == "error"]
    # Only the two informational notes every published BinaryDenseNet gets.
    assert {d.code for d in result.diagnostics} <= {"pad-values-zero", "bn-before-sign"}
    assert result.non_binary_mac_leaders[0].layer.startswith(("stem_conv", "transition"))
    assert not result.unmapped_ops


# --- export wiring: export.json, export.md, --strict --------------------------------------


def _save(model, tmp_path: Path) -> Path:
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    return path


def _mixed_model():
    keras = _tf.keras()

    def body(x):
        y = _qconv("good")(x)
        y = _qconv("float_in", input_quantizer=None)(y)
        y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
        return _tf.larq().layers.QuantDense(
            4, input_quantizer="ste_sign", kernel_quantizer="ste_sign", name="qdense"
        )(y)

    return _build(body, name="mixed")


def test_strict_export_exits_1_naming_the_layers_and_ships_no_model(tmp_path, capsys) -> None:
    ckpt = _save(_mixed_model(), tmp_path)
    out = tmp_path / "out"
    (out).mkdir()
    (out / "model.tflite").write_bytes(b"an older export")
    assert run(["export", str(ckpt), "-o", str(out), "--strict", "--no-rewrite"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "2 layer(s) marked binary did not become LceBconv2d" in err
    assert "float_in (no-input-quantizer)" in err and "qdense (quant-dense)" in err
    assert not (out / "model.tflite").exists()
    assert (out / "model.rejected.tflite").stat().st_size > 0
    report = json.loads((out / "export.json").read_text())
    assert report["strict"] == {"passed": False}
    assert report["audit"]["summary"]["stayed_float"] == ["float_in", "qdense"]
    assert "**stayed float: float_in, qdense**" in (out / "export.md").read_text()


def test_strict_export_with_json_prints_the_report_it_wrote(tmp_path, capsys) -> None:
    """A script reading --json gets the report of a failed --strict export too."""
    ckpt = _save(_mixed_model(), tmp_path)
    out = tmp_path / "out"
    argv = ["export", str(ckpt), "-o", str(out), "--strict", "--no-rewrite", "--json"]
    assert run([*argv, "--no-validate"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((out / "export.json").read_text())
    assert printed["strict"] == {"passed": False}


def test_export_without_strict_writes_the_model_and_the_audit(tmp_path, capsys) -> None:
    ckpt = _save(_mixed_model(), tmp_path)
    out = tmp_path / "out"
    assert run(["export", str(ckpt), "-o", str(out)]) == 0
    human = capsys.readouterr().out
    assert "why not" in human and "no-input-quantizer" in human
    assert "rewritten-as-1x1-conv" in human  # qdense became a 1x1 binary conv
    assert (out / "model.tflite").exists() and not (out / "model.rejected.tflite").exists()
    report = json.loads((out / "export.json").read_text())
    assert "strict" not in report
    assert report["audit"]["summary"]["became_binary"] == 2
    markdown = (out / "export.md").read_text()
    assert markdown.startswith("# Export of mixed for arm64")
    assert "## Conversion audit: mixed" in markdown


def test_strict_export_of_a_clean_model_passes(tmp_path, tiny_bnn) -> None:
    out = tmp_path / "out"
    assert run(["export", str(_save(tiny_bnn, tmp_path)), "-o", str(out), "--strict"]) == 0
    assert json.loads((out / "export.json").read_text())["strict"] == {"passed": True}
    assert (out / "model.tflite").exists()


# --- the Markdown rendering --------------------------------------------------------------


def _small_model():
    keras = _tf.keras()

    def body(x):
        y = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name="stem")(x)
        y = keras.layers.BatchNormalization(name="bn1")(y)
        y = _qconv("bconv")(y)
        y = keras.layers.BatchNormalization(name="bn2")(y)
        y = _qconv("float_in", input_quantizer=None)(y)
        y = keras.layers.GlobalAveragePooling2D(name="gap")(y)
        return keras.layers.Dense(10, name="head")(y)

    return _build(body, channels=3, name="small")


def test_markdown_rendering_matches_the_snapshot() -> None:
    """Regenerate with BNNCONVERT_UPDATE_SNAPSHOTS=1 after an intended change."""
    model = _small_model()
    markdown = render(audit(model, _tf.lce().convert_keras_model(model)))
    if os.environ.get("BNNCONVERT_UPDATE_SNAPSHOTS"):
        SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
        SNAPSHOT.write_text(markdown)
    assert markdown == SNAPSHOT.read_text()


# --- truthfulness: fused signs, every Larq class, lost quantizers, own fake-quant ---------


def test_transposed_conv_after_a_bconv_is_not_blamed_on_its_fused_sign() -> None:
    """LCE computes its input sign in the bconv before (bitpacked output): that is supported."""
    lq = _tf.larq()

    def body(x):
        y = _qconv("first_bconv", pad_values=1.0)(x)
        return lq.layers.QuantConv2DTranspose(
            16, 3, strides=2, padding="same", input_quantizer="ste_sign",
            kernel_quantizer="ste_sign", kernel_constraint="weight_clip", name="qc",
        )(y)  # fmt: skip

    result = _audit(body)
    assert _errors(result) == {"no-binary-op": "LCE has no binary op for QuantConv2DTranspose"}
    assert [q.name for q in result.stayed_float] == ["qc"]


def test_every_larq_quantized_class_is_counted() -> None:
    lq, keras = _tf.larq(), _tf.keras()
    binary = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign"}

    def body(x):
        y = _qconv("conv2d")(x)
        y = lq.layers.QuantDepthwiseConv2D(
            3, padding="same", input_quantizer="ste_sign", depthwise_quantizer="ste_sign",
            name="depthwise",
        )(y)  # fmt: skip
        y = lq.layers.QuantConv2DTranspose(32, 3, padding="same", name="transposed", **binary)(y)
        y = keras.layers.Reshape((64, 32), name="as_sequence")(y)
        y = lq.layers.QuantConv1D(32, 3, padding="same", name="conv1d", **binary)(y)
        y = keras.layers.GlobalAveragePooling1D(name="gap")(y)
        return lq.layers.QuantDense(10, name="dense", **binary)(y)

    result = _audit(body)
    assert result.by_class == {
        "QuantConv2D": 1,
        "QuantDepthwiseConv2D": 1,
        "QuantConv2DTranspose": 1,
        "QuantConv1D": 1,
        "QuantDense": 1,
    }
    summary = result.to_dict()["summary"]
    assert summary["quantized_by_class"] == result.by_class
    assert summary["became_binary"] == 1  # LCE 0.16 keeps even QuantConv1D float
    assert summary["stayed_float"] == ["depthwise", "transposed", "conv1d", "dense"]
    assert "kernel_size (1, k)" in next(d.fix for d in result.diagnostics if d.layer == "conv1d")
    assert "quantized layers: 5 (QuantConv2D 1, QuantDepthwiseConv2D 1" in render(result)


def _saved_with_lost_quantizers(path: Path):
    """A SavedModel whose quantizer is a user-written function: Keras revives it without."""
    tf, keras, lq = _tf.tensorflow(), _tf.keras(), _tf.larq()

    def user_sign(x):  # XNOR-Net's scaled sign, written as a plain function
        return lq.quantizers.ste_sign(x) * tf.reduce_mean(tf.abs(x))

    model = _build(
        lambda x: _qconv("qb", input_quantizer=user_sign)(
            keras.layers.BatchNormalization(name="bn")(_qconv("qa", input_quantizer=user_sign)(x))
        ),
        name="lost",
    )
    model.save(path, save_format="tf")
    return keras.models.load_model(path, compile=False)


def test_layers_whose_quantizers_were_lost_in_saving_are_counted_and_fail_strict(
    tmp_path,
) -> None:
    from bnnconvert.export_report import strict_failure

    revived = _saved_with_lost_quantizers(tmp_path / "saved")
    assert not hasattr(revived.get_layer("qa"), "input_quantizer")
    result = audit(revived, _tf.lce().convert_keras_model(revived))
    assert [(q.name, q.class_name, q.quantizers_lost) for q in result.quantized] == [
        ("qa", "QuantConv2D", True),
        ("qb", "QuantConv2D", True),
    ]
    assert [q.name for q in result.stayed_float] == ["qa", "qb"]
    assert result.to_dict()["summary"]["quantizers_lost"] == ["qa", "qb"]
    message = _errors(result, "qa")["quantizers-lost"]
    assert message.startswith("QuantConv2D lost its quantizers when it was saved")
    assert "a user-written function, cannot be restored" in message
    failure = strict_failure(result, tmp_path / "out")
    assert failure is not None
    assert "2 layer(s) marked binary did not become LceBconv2d: qa (quantizers-lost), qb" in str(
        failure
    )
    assert "**no** (quantizers lost in saving)" in render(result)


def test_strict_export_of_a_savedmodel_with_lost_quantizers_exits_1(tmp_path, capsys) -> None:
    _saved_with_lost_quantizers(tmp_path / "saved")
    out = tmp_path / "out"
    argv = ["export", str(tmp_path / "saved"), "-o", str(out), "--trust-checkpoint", "--strict"]
    assert run(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "2 layer(s) marked binary did not become LceBconv2d: qa (quantizers-lost)" in err
    report = json.loads((out / "export.json").read_text())
    assert report["audit"]["summary"]["quantizers_lost"] == ["qa", "qb"]
    assert report["audit"]["summary"]["quantized_by_class"] == {"QuantConv2D": 2}


def test_own_fake_quant_nodes_are_audited_as_the_source_of_int8() -> None:
    tf, keras = _tf.tensorflow(), _tf.keras()

    def body(x):
        y = tf.quantization.fake_quant_with_min_max_args(x, min=-3.0, max=3.0)
        y = keras.layers.Conv2D(16, 3, padding="same", name="float_conv")(y)
        return tf.quantization.fake_quant_with_min_max_args(y, min=-8.0, max=8.0)

    model = _build(body, channels=3)
    result = audit(model, _tf.lce().convert_keras_model(model))
    notes = [d for d in result.diagnostics if d.code == "own-quantization"]
    assert notes and all(d.severity == "info" for d in notes)
    assert notes[0].message.startswith("int8 from the model's own quantization nodes (QUANTIZE")
    assert notes[0].layer.startswith("tf.quantization.fake_quant_with_min_max_args")
    assert not [o for o in result.unmapped_ops if o["type"] == "QUANTIZE"]


# --- models whose Keras layers the audit cannot see ---------------------------------------


def _subclassed_saved_model(path: Path, binary_head: bool = False) -> Path:
    """A subclassed model (float stem, binary block with a real shortcut) saved as SavedModel.

    ``binary_head``: a binary ``QuantDense`` after the pool, which LCE leaves as
    ``LceQuantize -> LceDequantize -> FULLY_CONNECTED`` (nothing rewrites it: the
    audit and the rewrites cannot see inside the model).
    """
    import numpy as np

    keras = _tf.keras()
    larq = _tf.larq()

    class Block(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.conv = _qconv("qc", pad_values=1.0)

        def call(self, x):
            return x + self.conv(x)

    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="subclassed")
            self.stem = keras.layers.Conv2D(32, 3, padding="same")
            self.block = Block()
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.head = larq.layers.QuantDense(
                10, input_quantizer="ste_sign", kernel_quantizer="ste_sign", use_bias=False
            )

        def call(self, x):
            pooled = self.pool(self.block(self.stem(x)))
            return self.head(pooled) if binary_head else pooled

    keras.utils.set_random_seed(0)
    net = Net()
    net(np.zeros((1, 8, 8, 3), np.float32))
    net.save(path, save_format="tf")
    return path


def test_subclassed_saved_model_is_audited_per_op(tmp_path, capsys) -> None:
    saved = _subclassed_saved_model(tmp_path / "sm")
    out = tmp_path / "out"
    argv = ["export", str(saved), "-o", str(out), "--trust-checkpoint", "--no-validate", "--strict"]
    assert run(argv) == 0  # a binary op, and no float kernel op after signs
    human = capsys.readouterr().out
    stem, bconv = 8 * 8 * 32 * 9 * 3, 8 * 8 * 32 * 9 * 32
    share = f"{bconv / (bconv + stem):.1%}"
    assert share == "91.4%"
    line = (
        "binary: the audit cannot see this model's Keras layers (a subclassed or nested model "
        f"('Net') is one layer to it); per op: 1 CONV_2D, 1 LceBconv2d; {share} of MACs binary"
    )
    assert line in human
    assert "0 of 0 layers marked binary" not in human
    summary = json.loads((out / "export.json").read_text())["audit"]["summary"]
    assert summary["opaque"] == "a subclassed or nested model ('Net') is one layer to it"
    assert summary["ops_with_macs"] == {"CONV_2D": 1, "LceBconv2d": 1}
    assert summary["macs"] == {"binary": bconv, "int8": 0, "int16": 0, "float": stem}
    markdown = (out / "export.md").read_text()
    assert "- binary layers: the audit cannot see this model's Keras layers" in markdown
    assert "- quantized layers" not in markdown
    assert "- --strict: passed (judged by the ops: the audit cannot see the Keras layers)\n" in (
        markdown
    )


def test_strict_judges_an_opaque_model_by_its_ops(tmp_path, capsys) -> None:
    """Its binary QuantDense stays float after signs: --strict fails, naming the ops."""
    saved = _subclassed_saved_model(tmp_path / "sm", binary_head=True)
    out = tmp_path / "out"
    argv = ["export", str(saved), "-o", str(out), "--trust-checkpoint", "--no-validate", "--strict"]
    assert run(argv) == 1
    summary = json.loads((out / "export.json").read_text())["audit"]["summary"]
    assert summary["ops_with_macs"] == {"CONV_2D": 1, "LceBconv2d": 1, "FULLY_CONNECTED": 1}
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --strict: the audit cannot see this model's Keras layers (a subclassed or "
        "nested model ('Net') is one layer to it), so its ops were judged: "
        "float-op-after-signs: 1 float FULLY_CONNECTED op(s) read signs that LceDequantize "
        "turned back into ±1 floats (ops 7): layers with a sign input that LCE could not "
        f"binarize; the model was written as {out / 'model.rejected.tflite'} "
        f"(no {out / 'model.tflite'}), reasons and fixes in {out / 'export.md'}"
    )


def test_functional_model_is_not_called_opaque() -> None:
    result = _audit(lambda x: _tf.keras().layers.Conv2D(8, 3, name="float_conv")(x), 3)
    assert result.opaque == "" and result.ops_with_macs == {"CONV_2D": 1}


def test_signature_only_saved_model_is_audited_per_op(tmp_path) -> None:
    """``tf.saved_model.save`` without Keras: a Lambda calls its serving signature."""
    import numpy as np

    from bnnconvert import checkpoint

    tf = _tf.tensorflow()

    class Module(tf.Module):
        def __init__(self):
            self.kernel = tf.Variable(np.random.default_rng(0).normal(size=(3, 3, 3, 8)))

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": tf.nn.conv2d(x, tf.cast(self.kernel, tf.float32), 1, "SAME")}

    module = Module()
    tf.saved_model.save(module, str(tmp_path / "sig"), signatures=module.__call__)
    model = checkpoint.load(tmp_path / "sig", trust=True).model
    result = audit(model, _tf.lce().convert_keras_model(model))
    assert result.opaque == "a Lambda ('serving_default') calls a SavedModel signature or function"
    assert result.ops_with_macs == {"CONV_2D": 1}
    assert result.macs["float"] == 8 * 8 * 8 * 9 * 3
    assert render(result).splitlines()[2] == (
        "- the audit cannot see this model's Keras layers (a Lambda ('serving_default') calls "
        "a SavedModel signature or function); per op: 1 CONV_2D"
    )
    # Nothing runs binary: --strict, judging the ops, fails.
    assert [(d.code, d.layer, d.message) for d in result.op_level_errors] == [
        ("no-binary-op", "serving_default", "no LCE binary op: 13,824 MACs, none binary")
    ]
    from bnnconvert.export_report import strict_failure

    assert str(strict_failure(result, tmp_path)).startswith(
        "--strict: the audit cannot see this model's Keras layers (a Lambda ('serving_default') "
        "calls a SavedModel signature or function), so its ops were judged: "
        "no-binary-op: no LCE binary op: 13,824 MACs, none binary; the model was written as "
    )


# --- the xcore back end -------------------------------------------------------------------


def test_xcore_back_end_is_the_reason_binary_convs_stay_float(tmp_path, capsys) -> None:
    """LCE's xcore back end leaves binary convs float by design (README's Targets table)."""
    from bnnconvert import convert, targets
    from bnnconvert.export_report import strict_failure

    model = _build(lambda x: _qconv("qc2")(_qconv()(x)), name="xc")
    flatbuffer, _ = convert.convert(model, targets.target("xcore"))
    result = audit(model, flatbuffer, back_end="xcore")
    assert [(q.name, q.became) for q in result.stayed_float] == [
        ("qc", ["CONV_2D"]),
        ("qc2", ["CONV_2D"]),
    ]
    assert {layer: list(_errors(result, layer)) for layer in ("qc", "qc2")} == {
        "qc": ["xcore-back-end"],
        "qc2": ["xcore-back-end"],
    }
    [finding] = [d for d in result.diagnostics if d.layer == "qc"]
    assert finding.message.startswith(
        "LCE 0.16's xcore back end leaves every binary conv as LceQuantize -> LceDequantize -> "
        "float CONV_2D with ±1 weights by design"
    )
    assert finding.fix.startswith("use --target arm64, armv7 or x86_64 for LCE's binary kernels")
    assert "unknown" not in render(result)
    failure = strict_failure(result, tmp_path)
    assert failure is not None and (
        "2 layer(s) marked binary did not become LceBconv2d: qc (xcore-back-end), "
        "qc2 (xcore-back-end); "
    ) in str(failure)


def test_xcore_keeps_the_layers_own_reasons_after_the_back_end(tmp_path) -> None:
    from bnnconvert import convert, targets
    from bnnconvert.export_report import strict_failure

    model = _build(lambda x: _qconv(input_quantizer="ste_heaviside")(x), name="xc")
    flatbuffer, _ = convert.convert(model, targets.target("xcore"))
    result = audit(model, flatbuffer, back_end="xcore")
    assert list(_errors(result)) == ["xcore-back-end", "unsupported-input-quantizer"]
    assert "qc (xcore-back-end, unsupported-input-quantizer)" in str(
        strict_failure(result, tmp_path)
    )


# --- LCE 0.16's ZeroPadding2D -> strided conv merge --------------------------------------


def _conv_s2(name: str = "conv"):
    return _tf.keras().layers.Conv2D(8, 3, strides=2, name=name)


# (input size, ZeroPadding2D padding, the conv after it, whether LCE's merge is wrong)
PAD_MERGES = {
    "even_pad1_stride2": (8, 1, _conv_s2, True),
    "odd_pad1_stride2": (9, 1, _conv_s2, False),
    "even_pad1_stride1": (8, 1, lambda: _tf.keras().layers.Conv2D(8, 3, name="conv"), False),
    "even_trimmed_pad": (8, ((1, 0), (1, 0)), _conv_s2, False),
    "even_pad2_kernel5": (
        8,
        2,
        lambda: _tf.keras().layers.Conv2D(8, 5, strides=2, name="conv"),
        True,
    ),
    "depthwise": (8, 1, lambda: _tf.keras().layers.DepthwiseConv2D(3, 2, name="conv"), True),
    "binary_weights_only": (  # a first layer without input quantizer: a float CONV_2D
        8,
        1,
        lambda: _qconv("conv", input_quantizer=None, strides=2, padding="valid"),
        True,
    ),
    "binary": (8, 1, lambda: _qconv("conv", strides=2, padding="valid"), False),  # sign between
}


@pytest.mark.parametrize("case", PAD_MERGES)
def test_pad_merged_into_a_strided_conv_is_an_error_only_where_outputs_change(case) -> None:
    size, padding, conv, wrong = PAD_MERGES[case]
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((size, size, 32), name="x")
    model = keras.Model(x, conv()(keras.layers.ZeroPadding2D(padding, name="pad")(x)), name="m")
    flatbuffer = _tf.lce().convert_keras_model(model)
    found = [d for d in audit(model, flatbuffer).diagnostics if d.code == "lce-pad-stride-bug"]
    assert [(d.layer, d.severity) for d in found] == ([("conv", "error")] if wrong else [])
    sample = np.random.default_rng(0).uniform(-1, 1, (1, size, size, 32)).astype(np.float32)
    error = np.abs(_tf.lce_interpreter(flatbuffer).predict(sample) - model(sample).numpy()).max()
    assert bool(error > 0.1) is wrong


def test_pad_merge_finding_says_what_lce_pads_and_the_exact_fix() -> None:
    model = _pad_conv(1)
    [finding] = [
        d
        for d in audit(model, _tf.lce().convert_keras_model(model)).diagnostics
        if d.code == "lce-pad-stride-bug"
    ]
    assert finding.message == (
        "LCE 0.16 merges ZeroPadding2D 'pad' (padding ((1, 1), (1, 1))) into this "
        "stride-2x2 conv as SAME padding, which on its 8x8 input pads 0 row(s) and 0 column(s) "
        "first instead: every window is shifted and the outputs are wrong"
    )
    assert finding.fix.startswith("set ZeroPadding2D padding to ((1, 0), (1, 0))")


def _pad_conv(padding, size: int = 8):
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    x = keras.Input((size, size, 3), name="x")
    y = keras.layers.ZeroPadding2D(padding, name="pad")(x)
    return keras.Model(x, keras.layers.Conv2D(8, 3, strides=2, name="conv")(y), name="padded")


def test_the_suggested_padding_gives_the_trained_outputs_exactly() -> None:
    buggy, fixed = _pad_conv(1), _pad_conv(((1, 0), (1, 0)))
    fixed.get_layer("conv").set_weights(buggy.get_layer("conv").get_weights())
    x = np.random.default_rng(0).uniform(-1, 1, (1, 8, 8, 3)).astype(np.float32)
    expected = buggy.predict(x, verbose=0)
    fixed_flatbuffer = _tf.lce().convert_keras_model(fixed)
    assert not [d for d in audit(fixed, fixed_flatbuffer).diagnostics if d.severity == "error"]
    run_fixed = _tf.lce_interpreter(fixed_flatbuffer).predict(x)
    np.testing.assert_allclose(run_fixed, expected, atol=1e-5)
    run_buggy = _tf.lce_interpreter(_tf.lce().convert_keras_model(buggy)).predict(x)
    assert np.abs(run_buggy - expected).max() > 0.1  # what the finding is about


def test_export_of_a_pad_merged_model_fails_parity_and_prints_the_error(tmp_path, capsys) -> None:
    ckpt = _save(_pad_conv(1), tmp_path)
    out = tmp_path / "out"
    assert run(["export", str(ckpt), "-o", str(out)]) == 0
    human = capsys.readouterr().out
    assert "error: lce-pad-stride-bug (conv) (see export.md)" in human
    report = json.loads((out / "export.json").read_text())
    assert report["validation"]["passed"] is False
    assert report["audit"]["summary"]["errors"] == 1
    assert (
        "**error** `lce-pad-stride-bug` (conv): LCE 0.16 merges" in (out / "export.md").read_text()
    )


def test_batch_norm_line_says_what_became_of_every_batch_norm() -> None:
    from bnnconvert.reports.audit_markdown import describe_batch_norms

    summary = {"batch_norms": 12, "batch_norms_fused": 0, "batch_norms_folded": 9}
    assert (
        describe_batch_norms(summary) == "12 (9 folded into sign thresholds, 3 left as float ops)"
    )
    assert describe_batch_norms({**summary, "batch_norms": 0, "batch_norms_folded": 0}) == "none"


def test_a_zero_padded_binary_conv_with_an_int8_output_is_an_error(tmp_path) -> None:
    """LCE's optimized kernels correct zero padding only for a float output. A feature
    map made an int8 graph output gives the binary conv before it an int8 output: the
    interpreter refuses the model, and the audit says so."""
    from bnnconvert.export import export

    def body(x):
        keras = _tf.keras()
        x = keras.layers.Conv2D(32, 3, padding="same", name="stem")(x)
        return keras.layers.BatchNormalization(name="bn")(_qconv()(x))

    _build(body, channels=3).save(tmp_path / "m.keras")
    x = np.random.default_rng(0).uniform(0, 1, (16, 8, 8, 3)).astype(np.float32)
    np.savez(tmp_path / "calibration.npz", x=x)
    common = {"target": "arm64", "validate_samples": 8}
    floats = export(tmp_path / "m.keras", output_dir=tmp_path / "float", **common)
    int8 = export(tmp_path / "m.keras", output_dir=tmp_path / "int8", int8_activations=True,
                  calibration=tmp_path / "calibration.npz", output_type="int8",
                  **common)  # fmt: skip
    assert [(d.code, d.severity) for d in floats.audit.diagnostics if d.layer == "qc"] == [
        ("pad-values-zero", "info")
    ]
    assert _errors(int8.audit) == {
        "pad-values-zero-unsupported": "pad_values=0 with an int8 output: LCE's optimized binary "
        "kernels cannot run it (they correct zero padding only for a float output without a "
        "fused activation); the interpreter refuses the model"
    }
    assert floats.parity.passed
    assert int8.parity.verdict == "not checked"
    assert int8.parity.unchecked[0].startswith("parity not checked: LCE's interpreter cannot")
