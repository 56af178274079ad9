"""The Android demo's plain-Java core on the JVM, with golden files from the Python side.

Writes, for real photos and a digit through real exported models, the files
``android_demo/core``'s GoldenTest reads (see its Javadoc), then runs
``android_demo/core/run-tests.sh``. The Java side must reproduce the Python
preprocessing bit for bit, parse the metadata to the same values and pick the
same top-5 classes. Without a JDK and JUnit 4 the test is skipped locally and
fails in CI (``CI=true``): the JVM tests are part of what CI must show.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bnnconvert import _tf, checkpoint, metadata
from bnnconvert.preprocessing import PreprocessingSpec, parse_preprocessing, preprocess

ROOT = Path(__file__).resolve().parents[1]
RUN_TESTS = ROOT / "android_demo" / "core" / "run-tests.sh"
JUNIT = Path("/usr/share/java/junit4.jar")
DIGITS_MODEL = ROOT / "models" / "digits" / "model.keras"


def _require_jvm() -> None:
    missing = [tool for tool in ("javac", "java") if shutil.which(tool) is None]
    if not JUNIT.is_file():
        missing.append(str(JUNIT))
    if missing:
        message = f"missing {', '.join(missing)}: apt-get install -y default-jdk-headless junit4"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _write_case(
    root: Path,
    name: str,
    flatbuffer: bytes,
    image: np.ndarray,
    spec: PreprocessingSpec,
    labels: list[str],
) -> None:
    case = root / name
    case.mkdir(parents=True)
    model = metadata.embed_metadata(
        flatbuffer,
        name=name,
        version="7",
        target="arm64",
        labels=labels,
        preprocessing=spec,
    )
    (case / "model.tflite").write_bytes(model)
    # What Java must parse, from the metadata as Python reads it back out of the model.
    found = metadata.read_metadata(model)
    assert found is not None
    pre, inp, out = found["preprocessing"], found["input"], found["output"]
    expected = {
        "name": found["model"]["name"],
        "version": found["model"]["version"],
        "target": found["producer"]["target"],
        "producer_version": found["producer"]["version"],
        "height": inp["height"],
        "width": inp["width"],
        "channels": inp["channels"],
        "input_dtype": inp["dtype"],
        "output_index": out["index"],
        "classes": out["classes"],
        "scores": out["scores"],
        "color": pre["color"],
        "fit": pre["fit"],
        "crop_fraction": repr(pre["crop_fraction"]),
        "scale": repr(pre["scale"]),
        "mean": ",".join(repr(v) for v in pre["mean"]),
        "std": ",".join(repr(v) for v in pre["std"]),
    }
    (case / "expected.txt").write_text("".join(f"{k}={v}\n" for k, v in expected.items()))
    (case / "labels.txt").write_text("".join(f"{label}\n" for label in labels), "utf-8")
    height, width = image.shape[:2]
    (case / "image.rgb").write_bytes(np.ascontiguousarray(image, np.uint8).tobytes())
    (case / "image.txt").write_text(f"{width} {height}\n")
    tensor = preprocess(image, spec, inp["height"], inp["width"])
    (case / "input.f32").write_bytes(tensor[0].astype("<f4").tobytes())
    predicted = _tf.lce_interpreter(model).predict(tensor)
    several = isinstance(predicted, list)
    scores = np.asarray(predicted[out["index"]] if several else predicted, np.float32)[0]
    (case / "output.f32").write_bytes(scores.astype("<f4").tobytes())
    top5 = np.argsort(-scores, kind="stable")[:5]
    (case / "top5.txt").write_text(" ".join(str(i) for i in top5) + "\n")


def _digit_photo() -> np.ndarray:
    """A scikit-learn digit as a photo would show it: dark ink on white, 24x40 RGB."""
    from PIL import Image
    from sklearn.datasets import load_digits

    ink = load_digits().images[7] / 16.0
    paper = Image.fromarray(np.round(255 * (1 - ink)).astype(np.uint8)).resize(
        (24, 40), Image.BICUBIC
    )
    return np.repeat(np.asarray(paper)[..., None], 3, axis=2)


def _feature_map_first(keras_model) -> bytes:
    """``keras_model`` converted with its first 4-D layer output as output 0, its scores as 1."""
    keras = _tf.keras()
    feature = next(layer.output for layer in keras_model.layers[1:] if len(layer.output.shape) == 4)
    two = keras.Model(keras_model.input, [feature, keras_model.output])
    return _tf.lce().convert_keras_model(two)


@pytest.fixture(scope="module")
def golden_dir(tmp_path_factory, tiny_bnn, tiny_bnn_tflite) -> Path:
    from skimage import data

    root = tmp_path_factory.mktemp("golden")
    ten = [f"class {i}" for i in range(10)]
    cases = {
        # A 300x451 cat photo, centre-cropped 224/256 and shrunk to 32x32.
        "cat_imagenet": (tiny_bnn_tflite, data.chelsea(), parse_preprocessing("imagenet"), ten),
        # A non-square crop of a portrait, stretched, BGR, symmetric range.
        "astronaut_bgr_stretch": (
            tiny_bnn_tflite,
            data.astronaut()[40:500, 100:390],
            parse_preprocessing("symmetric;order=bgr;fit=stretch"),
            ["ünïcødé ✓", *ten[1:]],
        ),
        # The classifier is output 1, after a feature map: the app must read that one.
        "cat_classifier_second": (
            _feature_map_first(tiny_bnn),
            data.chelsea(),
            parse_preprocessing("imagenet"),
            ten,
        ),
    }
    loaded = checkpoint.load(DIGITS_MODEL)
    digits_fb = _tf.lce().convert_keras_model(loaded.model)
    cases["digit_bundled_model"] = (
        digits_fb,
        _digit_photo(),
        parse_preprocessing("digits"),
        [str(i) for i in range(10)],
    )
    for name, (fb, image, spec, labels) in cases.items():
        _write_case(root, name, fb, image, spec, labels)
    (root / "cases.txt").write_text("".join(f"{name}\n" for name in cases))
    return root


def _run_core(golden: Path | None, build: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORE_BUILD_DIR": str(build)}
    env.pop("BNNCONVERT_GOLDEN_DIR", None)
    if golden is not None:
        env["BNNCONVERT_GOLDEN_DIR"] = str(golden)
    return subprocess.run(
        ["bash", str(RUN_TESTS)], env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def core_build(tmp_path_factory) -> Path:
    _require_jvm()
    return tmp_path_factory.mktemp("core_build")


def test_java_core_matches_python(core_build, golden_dir):
    result = _run_core(golden_dir, core_build)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert output.rstrip().endswith(" failed, 0 skipped"), output


def test_the_digit_case_is_classified_as_its_digit(golden_dir):
    """The bundled model reads the rendered 7 as a 7: the preset matches its training data."""
    top5 = (golden_dir / "digit_bundled_model" / "top5.txt").read_text().split()
    assert top5[0] == "7"


def test_golden_tests_fail_on_a_changed_tensor_or_missing_files(core_build, golden_dir, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(golden_dir, corrupt)
    tensor_path = corrupt / "cat_imagenet" / "input.f32"
    tensor = np.frombuffer(tensor_path.read_bytes(), "<f4").copy()
    tensor[5] = np.nextafter(tensor[5], np.float32(np.inf))  # one ulp
    tensor_path.write_bytes(tensor.tobytes())
    result = _run_core(corrupt, core_build)
    assert result.returncode != 0
    assert "cat_imagenet: element (y=0, x=1, c=2)" in result.stdout, result.stdout
    assert "1 failed, 0 skipped" in result.stdout

    result = _run_core(tmp_path / "nowhere", core_build)
    assert result.returncode != 0
    assert "3 failed, 0 skipped" in result.stdout, result.stdout


def test_the_classifier_case_reads_output_1(golden_dir):
    """The golden case that checks the app's core reads the classifier's own output index."""
    expected = (golden_dir / "cat_classifier_second" / "expected.txt").read_text()
    assert "\noutput_index=1\n" in expected
