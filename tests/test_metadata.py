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
        "layout": "NHWC",
        "height": 32,
        "width": 32,
        "channels": 3,
    }
    assert found["output"]["classes"] == 10
    assert found["output"]["scores"] == "probabilities"  # the model ends in softmax
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
    assert str(info.value) == (
        "Expected 10 labels (the model's output 'StatefulPartitionedCall:0' has 10 classes), "
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
        "output": "10 probabilities",
        "preprocessing": "bgr, crop keeping 0.875, triangle, "
        "(x/255 - [0.406,0.456,0.485]) / [0.225,0.224,0.229]",
        "labels": "10: class 0, class 1, class 2, class 3, class 4, ...",
        "description": "a test model",
    }
    bare = metadata.embed_metadata(tiny_bnn_tflite, name="bare", target="x86_64")
    rows = metadata.summary(metadata.read_metadata(bare))
    assert rows["labels"] == "none"
    assert rows["preprocessing"].startswith("none")
