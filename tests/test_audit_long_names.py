"""The export audit of a model whose layer names are longer than LCE keeps in tensor names.

LCE cuts tensor names to 50 characters and appends a counter to the later
ones cut the same, so long names either stay unique only up to the cut or
read as another layer's name (``<model>/..._convolution_`` + counter ``1`` is
layer ``..._convolution_1``). The audit must say of such a model what it
says of the same model with short names: every binary conv became
``LceBconv2d``, every batch norm was fused, no op is left untraced, and
``strict`` passes.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from helpers import renamed, slow_after_first
from test_corpus import CASES

from bnnconvert import _tf, convert, ir, passes, rewrites
from bnnconvert.audit import audit
from bnnconvert.errors import CheckFailed
from bnnconvert.export import export
from bnnconvert.models import randomize_batchnorm

MODEL_NAME = "bnn_net"  # 7 characters: "bnn_net/" + 42 leaves the cut just before "1"
KINDS = ("stem", "bn", "conv", "pool", "logits")


def _short(kind: str, k: int) -> str:
    return f"{kind}{k}"


def _shared_prefix(kind: str, k: int) -> str:
    """Over 40 characters, a long shared prefix, unique before LCE's cut."""
    return f"encoder_stage_one_residual_block_{kind}{k}_" + "x" * 40


def _numeric_suffix(kind: str, k: int) -> str:
    """Names that differ only in the number at their end."""
    words = {"stem": "stem_convolution", "bn": "batch_normalization", "conv": "binary_convolution"}
    return f"resnet_stage_one_block_{words.get(kind, kind)}_{k}"


NAMINGS: dict[str, Callable[[str, int], str]] = {
    "shared-prefix": _shared_prefix,
    "numeric-suffix": _numeric_suffix,
}


def _model(name: Callable[[str, int], str]):
    """16x16x3 -> float stem -> BN -> 3 x (binary 3x3 conv -> BN) -> pool -> dense."""
    keras, lq = _tf.keras(), _tf.larq()
    binary = {"input_quantizer": "ste_sign", "kernel_quantizer": "ste_sign",
              "kernel_constraint": "weight_clip", "padding": "same", "use_bias": False}  # fmt: skip
    inp = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(32, 3, padding="same", use_bias=False, name=name("stem", 0))(inp)
    x = keras.layers.BatchNormalization(name=name("bn", 0))(x)
    for k in (1, 2, 3):
        x = lq.layers.QuantConv2D(32, 3, name=name("conv", k), **binary)(x)
        x = keras.layers.BatchNormalization(name=name("bn", k))(x)
    x = keras.layers.GlobalAveragePooling2D(name=name("pool", 0))(x)
    return keras.Model(inp, keras.layers.Dense(10, name=name("logits", 0))(x), name=MODEL_NAME)


def _rows(result, name: Callable[[str, int], str], _refused: str) -> dict[str, list]:
    """The audit's rows with every layer name given back its short name."""
    audit = result.audit
    short = {
        name(kind, k): _short(kind, k) for kind in KINDS for k in range(4)
    }  # long -> short (names not built are never looked up)
    errors: dict[str, list[str]] = {}
    for d in audit.diagnostics:
        if d.severity == "error":
            errors.setdefault(short.get(d.layer, d.layer), []).append(d.code)
    return {
        "quantized": [
            (short[q.name], q.became, q.binary, errors.get(short[q.name], []))
            for q in audit.quantized
        ],
        "layers": [(short.get(m.name, m.name), m.op_types) for m in audit.layers[1:]],
        "batch_norms": [(short[b.name], b.outcome) for b in audit.batch_norms],
        "unmapped": audit.unmapped_ops,
    }


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """naming -> (ExportResult, naming function, strict's refusal or "") of the same weights."""
    _tf.keras().utils.set_random_seed(0)
    short = _model(_short)
    randomize_batchnorm(short, seed=3)
    found = {}
    for naming, name in {"short": _short, **NAMINGS}.items():
        model = short if naming == "short" else _model(name)
        model.set_weights(short.get_weights())
        folder = tmp_path_factory.mktemp(naming)
        model.save(folder / "model.keras")
        ckpt = folder / "model.keras"
        try:
            result = export(ckpt, output_dir=folder / "out", validate_samples=0, strict=True)
            refused = ""
        except CheckFailed as e:  # for the rows, the same export without strict
            result = export(ckpt, output_dir=folder / "rows", validate_samples=0)
            refused = str(e)
        found[naming] = (result, name, refused)
    return found


def test_names_are_cut_as_the_case_needs(exports) -> None:
    """The premise: LCE cut the long names; one cut name reads as another layer's name."""
    for naming in NAMINGS:
        result, name, _ = exports[naming]
        graph = ir.read(result.model_path.read_bytes()).subgraphs[0]
        names = {graph.tensors[t].name for op in graph.operators for t in op.outputs}
        assert not any(f"/{name('conv', 2)}/" in n for n in names)
    result, name, _ = exports["numeric-suffix"]
    graph = ir.read(result.model_path.read_bytes()).subgraphs[0]
    names = {graph.tensors[t].name for op in graph.operators for t in op.outputs}
    assert f"{MODEL_NAME}/{name('conv', 1)}" in names  # the cut + counter "1"


def test_short_names_audit(exports) -> None:
    rows = _rows(*exports["short"])
    assert rows["quantized"] == [(f"conv{k}", ["LceBconv2d"], True, []) for k in (1, 2, 3)]
    assert rows["batch_norms"] == [
        ("bn0", "folded-into-conv"),
        *[(f"bn{k}", "fused-into-bconv") for k in (1, 2, 3)],
    ]
    assert rows["unmapped"] == []


@pytest.mark.parametrize("naming", list(NAMINGS))
def test_long_names_audit_as_short_names(exports, naming) -> None:
    assert _rows(*exports[naming]) == _rows(*exports["short"])


@pytest.mark.parametrize("naming", list(NAMINGS))
def test_strict_passes(exports, naming) -> None:
    result, _, refused = exports[naming]
    assert refused == ""
    assert result.strict_passed is True
    assert result.model_path.name == "model.tflite"
    assert result.audit.to_dict()["summary"]["became_binary"] == 3


def _corpus_audit(model, case):
    """The audit of ``model`` converted as ``export`` converts ``case`` (tests/test_corpus.py)."""
    model = convert.with_input_shape(model, case.convert_shape)
    to_convert, done = rewrites.rewrite_for_lce(model) if case.rewrite else (model, [])
    with _tf.quiet_native():  # LCE prints its grouped-conv complaint on fd 2
        flatbuffer = _tf.lce().convert_keras_model(to_convert)
    flatbuffer, _ = passes.optimize(flatbuffer)
    return audit(model, rewrites.record(flatbuffer, done))


LONG_HEAD, LONG_TAIL = "encoder_stage_one_residual_block_", "_" + "x" * 40


def _long(name: str) -> str:
    """A name unique only up to LCE's cut (the text after it is the same for all)."""
    return LONG_HEAD + name + LONG_TAIL


def _corpus_rows(result) -> tuple[list, ...]:
    """The audit's findings, batch-norm outcomes and MACs per layer, under short names."""

    def short(name: str) -> str:
        return name.removeprefix(LONG_HEAD).removesuffix(LONG_TAIL)

    return (
        [(short(q.name), q.became, q.binary) for q in result.quantized],
        sorted((short(d.layer), d.code, d.severity) for d in result.diagnostics),
        [(short(b.name), b.outcome) for b in result.batch_norms],
        [(short(m.name), m.macs) for m in result.layers],
        result.unmapped_ops,
    )


CORPUS = ["plain_bnn", "dorefa_activations", "grouped_32_and_16_per_group",
          "transposed_conv_decoder", "binary_dense_heads_no_rewrite", "two_outputs"]  # fmt: skip


@pytest.mark.parametrize("name", slow_after_first(CORPUS))
def test_corpus_case_with_long_names_audits_as_with_short(name) -> None:
    """Every finding, batch-norm outcome and MAC count of a corpus case survives the cut names."""
    case = CASES[name]
    keras = _tf.keras()
    keras.utils.set_random_seed(0)
    inp = keras.Input(case.input_shape, name="x")
    model = keras.Model(inp, case.body(inp), name=name)
    randomize_batchnorm(model, seed=3)
    short = _corpus_rows(_corpus_audit(model, case))
    assert _corpus_rows(_corpus_audit(renamed(model, _long), case)) == short
