"""How far correct layers are from Keras in isolation: the figures behind localize's tolerances.

Exports a spread of models correctly (the bundled digits model in every export
mode, the ONNX digits model, a tiny model with wide float layers, and with
``--bdn28`` BinaryDenseNet28 at 224 px), runs ``validate(..., layers=True)``
on each and prints, per export and kind of segment (float, fp16, int8), the
largest error of a value layer relative to its max|keras|, and for int8 the
part beyond the two int8 steps a layer is allowed. Compare the float column
with ``LAYER_RTOL`` and the int8 one with ``QUANT_RTOL["int8"]``
(``bnnconvert/validation/localize.py``).

    .venv/bin/python benchmarks/layer_errors.py [--bdn28] [--extra NAME=CKPT,TFLITE[,DATA]]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bnnconvert import _tf
from bnnconvert.export import export
from bnnconvert.models import binary_densenet28, randomize_batchnorm
from bnnconvert.passes import OptimizeOptions
from bnnconvert.validate import validate
from bnnconvert.validation import localize

REPO = Path(__file__).resolve().parents[1]
DIGITS = REPO / "models" / "digits"
INT8 = OptimizeOptions(int8_activations=True)
# Per export mode: its options and its input/output type.
DIGITS_MODES = {
    "digits": (OptimizeOptions(), "float32"),
    "digits fp16 weights": (OptimizeOptions(float_weights="fp16"), "float32"),
    "digits int8 weights": (OptimizeOptions(float_weights="int8"), "float32"),
    "digits int8 activations": (INT8, "float32"),
    "digits int8 in/out": (INT8, "int8"),
}


def wide_float_model(folder: Path) -> Path:
    """A tiny BNN with float layers of many inputs (3x3x128 conv, 12288-input dense).

    The dense layer's batch norm has the statistics of its own outputs (mean
    large against the spread), so folding it in divides float32 rounding by
    a small spread. Saves ``model.keras`` and ``test_split.npz``; returns the folder.
    """
    keras, lq = _tf.keras(), _tf.larq()
    keras.utils.set_random_seed(7)
    binary = dict(input_quantizer="ste_sign", kernel_quantizer="ste_sign",
                  kernel_constraint="weight_clip", use_bias=False)  # fmt: skip
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(128, 3, padding="same", name="stem")(inp)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    y = lq.layers.QuantConv2D(128, 3, padding="same", name="bconv", **binary)(x)
    x = keras.layers.Add()([x, keras.layers.BatchNormalization(name="bconv_bn")(y)])
    x = keras.layers.Conv2D(256, 3, padding="same", name="wide_conv")(x)
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(name="wide_bn")(x))
    x = keras.layers.MaxPooling2D(2)(keras.layers.Conv2D(192, 1, name="pointwise")(x))
    dense = keras.layers.Dense(512, name="wide_dense")
    x = dense(keras.layers.Flatten()(x))
    x = keras.layers.Activation("relu")(keras.layers.BatchNormalization(name="dense_bn")(x))
    model = keras.Model(inp, keras.layers.Dense(10, name="head")(x))
    randomize_batchnorm(model)
    rng = np.random.default_rng(7)
    for layer in model.layers:
        if type(layer) in (keras.layers.Conv2D, keras.layers.Dense):  # He-scaled, like trained
            kernel, bias = layer.get_weights()
            std = np.sqrt(2 / np.prod(kernel.shape[:-1]))
            layer.set_weights([rng.normal(0, std, kernel.shape).astype(np.float32),
                               rng.normal(0, 0.1, bias.shape).astype(np.float32)])  # fmt: skip
    x = rng.uniform(0, 1, (64, 16, 16, 3)).astype(np.float32)
    out = keras.Model(inp, dense.output)(x).numpy()
    bn = model.get_layer("dense_bn")
    gamma, beta = bn.get_weights()[:2]
    bn.set_weights([gamma, beta, out.mean(0), out.var(0) + 1e-3])
    model.save(folder / "model.keras")
    np.savez(folder / "test_split.npz", x=x[:16])
    return folder


def bdn28_model(folder: Path) -> Path:
    """BinaryDenseNet28 at 224 px with realistic batch norms (validated on photographs)."""
    model = binary_densenet28(input_shape=(224, 224, 3), num_classes=1000)
    randomize_batchnorm(model, 3)
    model.save(folder / "model.keras")
    return folder / "model.keras"


def worst_rows(result) -> dict[str, tuple[float, float, str]]:
    """Per segment kind: (largest max_rel_error, largest beyond-steps share, its layer)."""
    worst: dict[str, tuple[float, float, str]] = {}
    for r in result.layers:
        if r.meaning != "value":
            continue
        kind = r.quantized or "float"
        scale = r.max_abs_error / r.max_rel_error if r.max_rel_error > 0 else 0.0
        base = localize.LAYER_ATOL + localize.LAYER_RTOL * scale
        quant = localize.QUANT_RTOL[kind] * scale if r.quantized else 0.0
        steps = max(r.tolerance - base - quant, 0.0)
        beyond = max(r.max_abs_error - steps, 0.0) / scale if scale else 0.0
        rel, most, layer = worst.get(kind, (0.0, 0.0, ""))
        if r.max_rel_error > rel:
            rel, layer = r.max_rel_error, r.keras_layer
        worst[kind] = (rel, max(most, beyond), layer)
    return worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bdn28", action="store_true", help="add BinaryDenseNet28 at 224 px")
    parser.add_argument("--extra", action="append", default=[], metavar="NAME=CKPT,TFLITE[,DATA]",
                        help="an export made elsewhere (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="layer-errors-"))
    runs: list[tuple[str, Path, Path, Path | None, int]] = []
    for name, (options, io_type) in DIGITS_MODES.items():
        out = work / name.replace(" ", "-")
        export(DIGITS, output_dir=out, optimize=options, validate_samples=0,
               input_type=io_type, output_type=io_type)  # fmt: skip
        runs.append((name, DIGITS, out / "model.tflite", None, 16))
    onnx = REPO / "models" / "torch_digits" / "model.onnx"
    export(onnx, output_dir=work / "onnx", validate_samples=0)
    runs.append(("digits ONNX", onnx, work / "onnx" / "model.tflite", None, 16))
    wide = wide_float_model(work)
    for name, options in {"wide float": OptimizeOptions(), "wide float int8 act.": INT8}.items():
        out = work / name.replace(" ", "-")
        export(wide, output_dir=out, optimize=options, validate_samples=0)
        runs.append((name, wide, out / "model.tflite", None, 16))
    if args.bdn28:
        ckpt = bdn28_model(work)
        export(ckpt, output_dir=work / "bdn28", validate_samples=0)
        runs.append(("BinaryDenseNet28 224", ckpt, work / "bdn28" / "model.tflite", None, 2))
    for extra in args.extra:
        name, _, paths = extra.partition("=")
        ckpt, tflite, *data = paths.split(",")
        runs.append((name, Path(ckpt), Path(tflite), Path(data[0]) if data else None, 16))
    print(f"{'export':24} {'verdict':10} {'kind':6} {'max rel error':>13} "
          f"{'int8 beyond steps':>17}  layer")  # fmt: skip
    for name, ckpt, tflite, data, samples in runs:
        result = validate(ckpt, tflite, data=data, samples=samples, layers=True, workers=0)
        for kind, (rel, beyond, layer) in sorted(worst_rows(result).items()):
            shown = f"{beyond:17.2e}" if kind == "int8" else " " * 17
            print(f"{name:24} {result.verdict:10} {kind:6} {rel:13.2e} {shown}  {layer}",
                  flush=True)  # fmt: skip
    print(f"LAYER_RTOL {localize.LAYER_RTOL:g}, QUANT_RTOL {localize.QUANT_RTOL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
