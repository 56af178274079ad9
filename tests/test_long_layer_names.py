"""Layer names longer than LCE's converter keeps in tensor names.

LCE cuts a long layer name in its tensor names to the first 40 characters and
appends a counter (``<first 40 characters>2``); such a flatbuffer still comes
from its checkpoint, and validating it must say so.
"""

from __future__ import annotations

import numpy as np
import pytest

from bnnconvert import _tf
from bnnconvert.cli.main import run
from bnnconvert.mapping import layers_starting
from bnnconvert.models import randomize_batchnorm

LONG = "a_layer_name_as_long_as_an_onnx_node_path_in_pytorch_naming_"


def test_a_cut_name_with_a_counter_stands_for_the_layers_it_starts() -> None:
    known = [LONG + "bn1", LONG + "bconv1", "head"]
    assert layers_starting(LONG[:40] + "2", known) == sorted(known[:2])
    assert layers_starting(LONG[:40], known) == sorted(known[:2])
    assert layers_starting("hea", known) == ["head"]
    assert layers_starting("other3", known) == []


@pytest.fixture(scope="module")
def long_named(tmp_path_factory):
    keras, lq = _tf.keras(), _tf.larq()
    binary = {
        "input_quantizer": "ste_sign",
        "kernel_quantizer": "ste_sign",
        "kernel_constraint": "weight_clip",
        "padding": "same",
        "use_bias": False,
    }
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", name=LONG + "stem")(inp)
    x = keras.layers.BatchNormalization(name=LONG + "bn1")(x)
    x = lq.layers.QuantConv2D(32, 3, name=LONG + "bconv1", **binary)(x)
    x = keras.layers.BatchNormalization(name=LONG + "bn2")(x)
    x = lq.layers.QuantConv2D(32, 3, name=LONG + "bconv2", **binary)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inp, keras.layers.Dense(10, name="head")(x), name="long_names")
    randomize_batchnorm(model, seed=3)
    folder = tmp_path_factory.mktemp("long")
    model.save(folder / "model.keras")
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype("float32")
    np.savez(folder / "test_split.npz", x=x)
    return folder


def test_export_of_long_layer_names_validates_as_its_own(long_named, capsys) -> None:
    out = long_named / "out"
    assert run(["export", str(long_named), "-o", str(out), "--no-validate"]) == 0
    capsys.readouterr()
    code = run(["validate", str(long_named), str(out / "model.tflite")])
    text = capsys.readouterr()
    assert code == 0, text.err
    assert text.out.startswith("PASS: 4 samples")
