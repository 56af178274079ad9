"""Model metadata: embedding into real LCE flatbuffers, reading back, and input errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import __version__, _tf, ir, metadata, tflite_metadata
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.preprocessing import parse_preprocessing

LABELS = [f"class {i}" for i in range(9)] + ["ünïcødé ✓"]


_FIELDS = {
    "name": "tiny",
    "version": "3",
    "description": "a test model",
    "author": "bnnconvert tests",
    "target": "arm64",
    "labels": LABELS,
    "preprocessing": parse_preprocessing("imagenet;order=bgr"),
}


@pytest.fixture(scope="module")
def embedded(tiny_bnn_tflite) -> bytes:
    return metadata.embed_metadata(tiny_bnn_tflite, **_FIELDS)


def test_round_trip_through_a_converted_model(tiny_bnn_tflite, embedded):
    found = metadata.read_metadata(embedded)
    expected = metadata.build_metadata(ir.read(tiny_bnn_tflite), **_FIELDS)
    assert found == expected
    assert found["labels"] == LABELS
    assert found["input"] | {"tensor": None} == {
        "index": 0,
        "tensor": None,
        "shape": [1, 32, 32, 3],
        "dtype": "float32",
        "quantization": None,
        "layout": "NHWC",
        "height": 32,
        "width": 32,
        "channels": 3,
    }
    assert found["output"]["classes"] == 10
    assert found["output"]["kind"] == "classifier"
    assert found["output"]["scores"] == "probabilities"  # the model ends in softmax
    assert found["outputs"] == [found["output"]]
    assert found["preprocessing"]["color"] == "bgr"
    assert found["producer"]["target"] == "arm64"
    # The JSON entry is plain UTF-8 JSON, as documented.
    entry = ir.read(embedded).metadata[metadata.NAME]
    assert json.loads(entry.decode("utf-8")) == found


def test_standard_tflite_metadata(embedded):
    standard = metadata.read_tflite_metadata(embedded)
    assert standard["name"] == "tiny"
    assert standard["version"] == "3"
    assert standard["author"] == "bnnconvert tests"
    (image,) = standard["inputs"]
    assert image["image_color_space"] == "unknown"  # TFLite metadata has no BGR
    # TFLite normalises 0..255 pixels: mean and std scaled by 255, in tensor channel order.
    np.testing.assert_allclose(image["mean"], [103.53, 116.28, 123.675], rtol=1e-6)
    np.testing.assert_allclose(image["std"], [57.375, 57.12, 58.395], rtol=1e-6)
    (scores,) = standard["outputs"]
    assert scores["label_file"] == "labels.txt"
    files = tflite_metadata.associated_files(embedded)
    assert files["labels.txt"].decode("utf-8").splitlines() == LABELS


def test_model_still_runs_identically(tiny_bnn_tflite, embedded):
    x = np.random.default_rng(3).normal(size=(2, 32, 32, 3)).astype(np.float32)
    before = np.asarray(_tf.lce_interpreter(tiny_bnn_tflite).predict(x))
    after = np.asarray(_tf.lce_interpreter(embedded).predict(x))
    np.testing.assert_array_equal(after, before)


def test_graph_and_other_metadata_are_untouched(tiny_bnn_tflite, embedded):
    original, written = ir.read(tiny_bnn_tflite), ir.read(embedded)
    assert written.subgraphs == original.subgraphs
    assert written.buffers == original.buffers
    assert written.metadata["min_runtime_version"] == original.metadata["min_runtime_version"]


def test_embedding_again_replaces_the_entries(embedded):
    again = metadata.embed_metadata(embedded, name="renamed", target="x86_64")
    model = ir.read(again)
    assert sorted(model.metadata) == ["TFLITE_METADATA", "bnnconvert", "min_runtime_version"]
    found = metadata.read_metadata(again)
    assert found["model"]["name"] == "renamed"
    assert found["labels"] is None and found["preprocessing"] is None
    assert metadata.read_tflite_metadata(again)["outputs"][0]["label_file"] is None
    assert tflite_metadata.associated_files(again) == {}


def test_a_model_without_metadata(tiny_bnn_tflite):
    assert metadata.read_metadata(tiny_bnn_tflite) is None
    assert metadata.read_tflite_metadata(ir.read(tiny_bnn_tflite)) is None


def test_wrong_label_count(tiny_bnn_tflite):
    with pytest.raises(UsageProblem) as info:
        metadata.embed_metadata(tiny_bnn_tflite, name="t", target="arm64", labels=["a", "b"])
    (name,) = ir.read(tiny_bnn_tflite).signature_defs[0].outputs  # Keras's output layer name
    assert str(info.value) == (
        f"Expected 10 labels (the model's output {name!r} has 10 classes), "
        "got 2; give one label per class, in class-index order"
    )


def test_preprocessing_that_does_not_fit_the_input(tiny_bnn_tflite):
    with pytest.raises(UsageProblem) as info:
        metadata.embed_metadata(
            tiny_bnn_tflite, name="t", target="arm64", preprocessing=parse_preprocessing("digits")
        )
    assert str(info.value) == (
        "Expected preprocessing for 3 input channel(s), got order=gray (1 channel(s)); "
        "use order=rgb or order=bgr"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"cat\ndog\r\n\n\n", None),
        (b"\xef\xbb\xbfcat \ndog", None),  # a byte-order mark and trailing spaces are dropped
        (b"", "Expected one label per line in {path}, got an empty file"),
        (b"\n \n", "Expected one label per line in {path}, got an empty file"),
        (b"cat\n\ndog\n", "Expected a label on every line of {path}, got a blank line 2"),
        (
            b"cat\n\xff\n",
            "Expected a UTF-8 label file, got undecodable bytes at offset 4 of {path}",
        ),
    ],
    ids=["blank-lines-at-end", "bom-and-spaces", "empty", "blank-only", "blank-line-2", "not-utf8"],
)
def test_label_files(tmp_path, content, message):
    path = tmp_path / "labels.txt"
    path.write_bytes(content)
    if message is None:
        assert metadata.load_labels(path) == ["cat", "dog"]
        return
    with pytest.raises(UsageProblem) as info:
        metadata.load_labels(path)
    assert str(info.value).startswith(message.format(path=path))
    assert "\n" not in str(info.value)


def test_missing_label_file(tmp_path):
    with pytest.raises(UsageProblem, match=r"^Expected a label file at .*missing.txt, found none"):
        metadata.load_labels(tmp_path / "missing.txt")


def test_unreadable_metadata_entries(tiny_bnn_tflite):
    model = ir.read(tiny_bnn_tflite)
    model.metadata[metadata.NAME] = b"{not json"
    model.metadata[tflite_metadata.NAME] = b"\x00" * 16
    broken = ir.write(model)
    with pytest.raises(FlatbufferProblem, match=r"^Expected UTF-8 JSON in the model's"):
        metadata.read_metadata(broken)
    with pytest.raises(FlatbufferProblem, match=r"^Expected a TFLite ModelMetadata flatbuffer"):
        metadata.read_tflite_metadata(broken)
    model.metadata[metadata.NAME] = json.dumps({"schema_version": 99}).encode()
    with pytest.raises(FlatbufferProblem, match=r"schema version <= 1, got 99; upgrade bnnconvert"):
        metadata.read_metadata(ir.write(model))


def test_docs_describe_every_json_field(tiny_bnn_tflite):
    """docs/metadata.md documents each key the JSON has (a new key must be documented)."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "metadata.md").read_text("utf-8")
    example = metadata.build_metadata(
        ir.read(tiny_bnn_tflite),
        name="x",
        target="arm64",
        labels=[str(i) for i in range(10)],
        preprocessing=parse_preprocessing("imagenet"),
    )
    keys = set()
    for key, value in example.items():
        keys.add(key)
        if isinstance(value, dict):
            keys.update(value)
    missing = sorted(k for k in keys if f"`{k}`" not in doc)
    assert not missing, f"docs/metadata.md does not mention {missing}"


def test_summary_for_inspect(embedded, tiny_bnn_tflite):
    rows = metadata.summary(metadata.read_metadata(embedded))
    assert rows == {
        "model": "tiny v3",
        "producer": f"bnnconvert {__version__}, target arm64",
        "input": "32x32x3 float32 NHWC",
        "output": "10 classes (probabilities)",
        "preprocessing": "BGR (channels reversed); centre crop of 87.5% (resize 256 → crop 224), "
        "resized to 32×32, bilinear; (pixel/255 − (0.406, 0.456, 0.485))/(0.225, 0.224, 0.229), "
        "values −2.118..2.64",
        "labels": "10: class 0, class 1, class 2, class 3, class 4, ...",
        "description": "a test model",
    }
    bare = metadata.embed_metadata(tiny_bnn_tflite, name="bare", target="x86_64")
    rows = metadata.summary(metadata.read_metadata(bare))
    assert rows["labels"] == "none"
    assert rows["preprocessing"].startswith("none")


@pytest.fixture(scope="module")
def three_outputs() -> bytes:
    """A 16x16x1 input with three outputs: a 3x3x32 feature map, a 16x16x1 image, 10 logits."""
    keras = _tf.keras()
    keras.utils.set_random_seed(5)
    inp = keras.Input((16, 16, 1))
    features = keras.layers.Conv2D(32, 3, strides=5, name="features")(inp)
    image = keras.layers.Conv2D(1, 3, padding="same", name="image")(inp)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    logits = keras.layers.Dense(10, name="logits")(pooled)
    model = keras.Model(inp, [features, image, logits])
    return _tf.lce().convert_keras_model(model)


def test_each_output_is_described_by_its_name(three_outputs):
    found = metadata.read_metadata(
        metadata.embed_metadata(three_outputs, name="m", target="arm64", labels=list("abcdefghij"))
    )
    by_name = {o["name"]: o for o in found["outputs"]}
    assert set(by_name) == {"features", "image", "logits"}
    assert [o["index"] for o in found["outputs"]] == [0, 1, 2]
    assert by_name["features"] | {"index": 0, "tensor": ""} == {
        "index": 0, "name": "features", "tensor": "", "shape": [1, 3, 3, 32],
        "dtype": "float32", "quantization": None, "kind": "tensor",
    }  # fmt: skip
    assert by_name["image"]["kind"] == "tensor" and by_name["image"]["shape"] == [1, 16, 16, 1]
    assert "classes" not in by_name["image"] and "scores" not in by_name["image"]
    assert by_name["logits"] | {"index": 0, "tensor": ""} == {
        "index": 0, "name": "logits", "tensor": "", "shape": [1, 10], "dtype": "float32",
        "quantization": None, "kind": "classifier", "classes": 10, "scores": "logits",
    }  # fmt: skip
    assert found["output"] == by_name["logits"]  # the classifier the labels belong to
    rows = metadata.summary(found)
    assert rows["output features"] == "tensor 1x3x3x32 float32"
    assert rows["output image"] == "tensor 1x16x16x1 float32"
    assert rows["output logits"] == "10 classes (logits)"
    # The standard metadata lists the outputs in graph order; only the classifier has labels.
    standard = metadata.standard_metadata(found)
    assert [t.name for t in standard.outputs] == [
        "logits" if o["kind"] == "classifier" else o["name"] for o in found["outputs"]
    ]
    assert [t.label_file for t in standard.outputs if t.label_file] == ["labels.txt"]


def test_labels_need_a_classifier_output(three_outputs):
    model = ir.read(three_outputs)
    graph = model.subgraphs[0]
    logits = next(t for t in graph.outputs if len(graph.tensors[t].shape) == 2)
    graph.outputs.remove(logits)
    model.signature_defs = []
    data = ir.write(model)
    found = metadata.read_metadata(metadata.embed_metadata(data, name="m", target="arm64"))
    assert found["output"]["kind"] == "tensor" and found["output"]["index"] == 0
    assert "classes" not in found["output"]
    with pytest.raises(UsageProblem) as info:
        metadata.embed_metadata(data, name="m", target="arm64", labels=["a"])
    names = [repr(graph.tensors[t].name) for t in graph.outputs]
    shapes = ["x".join(map(str, graph.tensors[t].shape)) for t in graph.outputs]
    assert sorted(shapes) == ["1x16x16x1", "1x3x3x32"]
    assert str(info.value) == (
        "Expected a classifier output of shape (1, N) for labels=, got "
        + ", ".join(f"{n} {s} float32" for n, s in zip(names, shapes, strict=True))
        + "; leave out labels="
    )


def test_metadata_from_before_output_kinds_reads_as_a_classifier(embedded):
    found = metadata.read_metadata(embedded)
    del found["outputs"], found["output"]["kind"]
    assert metadata.summary(found)["output"] == "10 classes (probabilities)"
    assert [t.name for t in metadata.standard_metadata(found).outputs] == ["probability"]


@pytest.mark.parametrize(
    ("shape", "name", "description", "preprocessing_row"),
    [
        ((20,), "features", "20 feature values, float32.", "none"),
        ((64, 1), "sequence", "64 steps of 1 value(s), float32.", "none"),  # audio-like
        (
            (8, 6, 3),
            "image",
            "8x6 pixels of 3 channel(s), float32.",
            "none (the Android demo needs it: export with --preprocessing)",
        ),
    ],
    ids=["features", "sequence", "image"],
)
def test_the_standard_input_is_named_by_what_it_is(shape, name, description, preprocessing_row):
    keras = _tf.keras()
    keras.utils.set_random_seed(2)
    inp = keras.Input(shape)
    out = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inp))
    converted = _tf.lce().convert_keras_model(keras.Model(inp, out))
    embedded = metadata.embed_metadata(converted, name="m", target="arm64")
    (standard,) = metadata.read_tflite_metadata(embedded)["inputs"]
    assert (standard["name"], standard["description"]) == (name, description)
    assert standard["image_color_space"] is None and standard["mean"] is None
    assert tflite_metadata.describe(metadata.read_tflite_metadata(embedded)) == (
        f"m v1; input {name}: {description[:-1]}; output probability: range 0..1"
    )
    assert metadata.summary(metadata.read_metadata(embedded))["preprocessing"] == preprocessing_row
