"""The explicit list of Keras, TensorFlow and Larq objects a checkpoint may name.

A Keras model config names classes and functions that Keras resolves and
instantiates while it loads the model. Keras resolves a serialized object by
its ``class_name``, its ``module`` and its ``registered_name`` (the latter two
take precedence over the first), so :func:`check_config` checks all three of
every object, at every depth, against this list; anything not on it is refused
before Keras sees the file:

* layers: the Keras and Larq layers a BNN is built from (:data:`KERAS_LAYERS`,
  :data:`LARQ_LAYERS`), Larq quantizers used as layers, and the
  Functional/Sequential containers;
* initializers, regularizers, constraints, activations, Larq quantizers and
  mixed-precision policies, each only under an attribute of its kind
  (``*_initializer``, ``*_regularizer``, ``*_constraint``, ``activation``,
  ``*_quantizer``, ``dtype``) and only by a listed class or function name;
* ``module`` must be exactly the one Keras writes for that class
  (``keras.layers``, ``larq.quantizers`` ...). tf-keras writes ``builtins``
  for a function it knows by name only; that is accepted for a listed function
  name (these resolve to Keras or Larq functions before Python's builtins);
* ``registered_name`` must be absent, null or the ``class_name`` itself;
* inbound-node constants must be numbers (or lists of numbers).

This refuses, among everything else, ``Lambda``, the TensorFlow-op layers
(``TFOpLambda`` and relatives), RNN cell wrappers and user-written classes.
The one exception is a ``TFOpLambda`` that names one of TensorFlow's
fake-quantization functions (:data:`FAKE_QUANT_FUNCTIONS`: pure arithmetic,
LCE's documented route to int8) with numeric arguments only.
After loading, :func:`check_loaded_model` checks the built model again.
"""

from __future__ import annotations

import builtins
import importlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from bnnconvert.errors import CheckpointProblem
from bnnconvert.passes.int8_activations import FAKE_QUANT_FUNCTIONS

_TF_OP_MODULE = "tf_keras.src.layers.core.tf_op_layer"
_TF_OP_CONFIG_KEYS = frozenset({"name", "trainable", "dtype", "function"})

KERAS_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv1D",
        "Conv2D",
        "Conv2DTranspose",
        "DepthwiseConv2D",
        "SeparableConv1D",
        "SeparableConv2D",
        "Dense",
        "BatchNormalization",
        "LayerNormalization",
        "Activation",
        "ReLU",
        "LeakyReLU",
        "PReLU",
        "Softmax",
        "Add",
        "Subtract",
        "Multiply",
        "Average",
        "Maximum",
        "Minimum",
        "Concatenate",
        "MaxPooling1D",
        "MaxPooling2D",
        "AveragePooling1D",
        "AveragePooling2D",
        "GlobalAveragePooling1D",
        "GlobalAveragePooling2D",
        "GlobalMaxPooling1D",
        "GlobalMaxPooling2D",
        "Flatten",
        "Reshape",
        "Permute",
        "RepeatVector",
        "ZeroPadding1D",
        "ZeroPadding2D",
        "Cropping1D",
        "Cropping2D",
        "UpSampling1D",
        "UpSampling2D",
        "Dropout",
        "SpatialDropout1D",
        "SpatialDropout2D",
        "GaussianNoise",
        "ActivityRegularization",
        "Rescaling",
        "Normalization",
        "Identity",
        "TimeDistributed",
    }
)
LARQ_LAYERS = frozenset(
    {
        "QuantConv1D",
        "QuantConv2D",
        "QuantConv3D",
        "QuantConv2DTranspose",
        "QuantConv3DTranspose",
        "QuantDepthwiseConv2D",
        "QuantSeparableConv1D",
        "QuantSeparableConv2D",
        "QuantDense",
        "QuantLocallyConnected1D",
        "QuantLocallyConnected2D",
    }
)
_MODELS = {"Functional": "tf_keras.src.engine.functional", "Sequential": "keras"}
LARQ_QUANTIZERS = {
    "SteSign": "ste_sign",
    "ApproxSign": "approx_sign",
    "SwishSign": "swish_sign",
    "MagnitudeAwareSign": "magnitude_aware_sign",
    "SteTern": "ste_tern",
    "SteHeaviside": "ste_heaviside",
    "DoReFa": "dorefa_quantizer",
    "DoReFaQuantizer": "dorefa_quantizer",
    "NoOp": None,
    "NoOpQuantizer": None,
}
ACTIVATIONS = frozenset(
    {
        "linear",
        "relu",
        "relu6",
        "elu",
        "selu",
        "gelu",
        "sigmoid",
        "hard_sigmoid",
        "tanh",
        "softmax",
        "log_softmax",
        "softplus",
        "softsign",
        "swish",
        "silu",
        "mish",
        "exponential",
        "leaky_relu",
    }
)
_INITIALIZERS = [
    "Constant",
    "GlorotNormal",
    "GlorotUniform",
    "HeNormal",
    "HeUniform",
    "Identity",
    "LecunNormal",
    "LecunUniform",
    "Ones",
    "Orthogonal",
    "RandomNormal",
    "RandomUniform",
    "TruncatedNormal",
    "VarianceScaling",
    "Zeros",
]
_REGULARIZERS = ["L1", "L2", "L1L2", "OrthogonalRegularizer"]
_CONSTRAINTS = ["MaxNorm", "MinMaxNorm", "NonNeg", "UnitNorm", "RadialConstraint"]
_ROOT = "(model)"


def _snake(name: str) -> str:
    """``GlorotUniform`` -> ``glorot_uniform`` (Keras's function spelling)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name).lstrip("_")


@dataclass(frozen=True)
class Kind:
    """What may stand under one kind of attribute.

    Attributes:
        label: word used in messages ("quantizer").
        classes: class name -> the ``module`` Keras writes for it.
        functions: names accepted as a plain string or a ``function`` object.
        function_modules: ``module`` values accepted for a ``function`` object.
    """

    label: str
    classes: Mapping[str, str]
    functions: frozenset[str]
    function_modules: frozenset[str] = frozenset()


LAYER = Kind(
    "layer",
    {
        **{name: "keras.layers" for name in KERAS_LAYERS},
        **{name: "larq.layers" for name in LARQ_LAYERS},
        **dict.fromkeys(LARQ_QUANTIZERS, "larq.quantizers"),  # a quantizer is a layer too
        **_MODELS,
    },
    frozenset(),
)
QUANTIZER = Kind(
    "quantizer",
    dict.fromkeys(LARQ_QUANTIZERS, "larq.quantizers"),
    frozenset(name for name in LARQ_QUANTIZERS.values() if name),
    frozenset({"larq.quantizers", "builtins"}),
)
ACTIVATION = Kind("activation", {}, ACTIVATIONS, frozenset({"keras.activations", "builtins"}))
INITIALIZER = Kind(
    "initializer",
    dict.fromkeys(_INITIALIZERS, "keras.initializers"),
    frozenset(_snake(n) for n in _INITIALIZERS),
)
REGULARIZER = Kind(
    "regularizer",
    dict.fromkeys(_REGULARIZERS, "keras.regularizers"),
    frozenset({"l1", "l2", "l1_l2", "orthogonal_regularizer"}),
)
CONSTRAINT = Kind(
    "constraint",
    {
        **dict.fromkeys(_CONSTRAINTS, "keras.constraints"),
        "WeightClip": "larq.constraints",
        "weight_clip": "larq.constraints",
    },
    frozenset({"max_norm", "min_max_norm", "non_neg", "unit_norm", "radial_constraint"})
    | {"weight_clip"},
)
POLICY = Kind("dtype policy", {"Policy": "keras.mixed_precision"}, frozenset())

# Layers that run code named in the file; refused with the reason.
_RUNS_CODE = {
    "Lambda": "a Python function serialized in the file",
    "TFOpLambda": "a TensorFlow function named in the file",
    "SlicingOpLambda": "a TensorFlow function named in the file",
    "TensorFlowOpLayer": "TensorFlow ops stored in the file",
    "InstanceMethod": "a TensorFlow method named in the file",
    "ClassMethod": "a TensorFlow method named in the file",
    "InstanceProperty": "a TensorFlow property named in the file",
    "ResidualWrapper": "Python bytecode stored in the file (residual_fn)",
    "DropoutWrapper": "Python bytecode stored in the file (dropout_state_filter_visitor)",
    "DeviceWrapper": "an RNN cell wrapper",
}
# Built-in Larq equivalents of user-written quantizers, by words in their names.
_QUANTIZER_HINTS = (
    (("xnor", "magnitude", "scale", "mean"), "MagnitudeAwareSign", "magnitude_aware_sign"),
    (("dorefa",), "DoReFa", "dorefa_quantizer"),
    (("tern",), "SteTern", "ste_tern"),
    (("heaviside", "step"), "SteHeaviside", "ste_heaviside"),
    (("swish",), "SwishSign", "swish_sign"),
    (("approx",), "ApproxSign", "approx_sign"),
    (("sign", "binar", "bnn"), "SteSign", "ste_sign"),
)
_TRUST = "or pass trust_checkpoint= if you trust where this file comes from"
_REFUSED = f"refused: re-save it with stock Keras/Larq, {_TRUST}"
_NEVER_RUN = (
    f"which bnnconvert never executes; rebuild it from built-in Keras/Larq layers, {_TRUST}"
)

assert not (QUANTIZER.functions | ACTIVATIONS) & set(dir(builtins))


def _code_carrier(config: Any, path: str = "") -> tuple[str, str] | None:
    """``(attribute path, class name)`` of the first code-running object inside ``config``."""
    if isinstance(config, dict):
        if config.get("class_name") in _RUNS_CODE and path:
            return path, config["class_name"]
        for key, value in config.items():
            inner = f"{path}.{key}" if path and key != "config" else (path or key)
            found = _code_carrier(value, inner)
            if found:
                return found
    elif isinstance(config, list):
        for value in config:
            found = _code_carrier(value, path)
            if found:
                return found
    return None


def kind_of(key: str | None) -> Kind | None:
    """The kind of object that Keras deserializes under config key ``key``."""
    if key is None or key in ("layers", "layer", "model_config"):
        return LAYER
    if key == "activation" or key.endswith("_activation"):
        return ACTIVATION
    for suffix, kind in (
        ("_quantizer", QUANTIZER),
        ("_initializer", INITIALIZER),
        ("_regularizer", REGULARIZER),
        ("_constraint", CONSTRAINT),
    ):
        if key.endswith(suffix):
            return kind
    return POLICY if key == "dtype" else None


def larq_equivalent(name: str) -> str | None:
    """``lq.quantizers.X ("x")`` for a user-written quantizer called ``name``, if any."""
    lowered = name.lower()
    for words, cls, fn in _QUANTIZER_HINTS:
        if any(word in lowered for word in words):
            return f'lq.quantizers.{cls} ("{fn}")'
    return None


def _is_number(value: Any) -> bool:
    if isinstance(value, list):
        return all(_is_number(v) for v in value)
    return value is None or isinstance(value, (bool, int, float))


class _Checker:
    """Walks one config; raises :class:`CheckpointProblem` at the first refusal."""

    def __init__(self, source: str, trust_hint: str) -> None:
        self.source = source
        self.trust_hint = trust_hint

    def refuse(self, layer: str, attr: str, what: str) -> CheckpointProblem:
        return CheckpointProblem(f"{self.source}: layer {layer!r} attribute {attr!r}: {what}")

    def object(self, node: dict[str, Any], kind: Kind, layer: str, attr: str) -> None:
        at_root = layer == _ROOT  # before ``layer`` becomes the node's own name
        class_name = node.get("class_name")
        module = node.get("module")
        registered = node.get("registered_name")
        if kind is LAYER:
            inner = node.get("config")
            name = node.get("name") or (inner.get("name") if isinstance(inner, dict) else None)
            layer = str(name) if name is not None else layer
            attr = "class_name"
        if class_name == "function":
            self.function(node, kind, layer, attr)
            return
        if kind is LAYER and is_fake_quant_op(node):
            self.inbound(node.get("inbound_nodes", []), layer)
            return
        if not isinstance(class_name, str) or class_name not in kind.classes:
            raise self.unknown_class(class_name, kind, layer, attr, node)
        if registered not in (None, class_name):
            raise self.refuse(
                layer,
                "registered_name" if kind is LAYER else f"{attr}.registered_name",
                f"class_name {class_name!r} but registered_name {registered!r} "
                f"(Keras would build the registered object instead); {_REFUSED}",
            )
        if module is not None and module != kind.classes[class_name]:
            raise self.refuse(
                layer,
                "module" if kind is LAYER else f"{attr}.module",
                f"{class_name!r} from module {module!r}, but Keras/Larq save it from "
                f"{kind.classes[class_name]!r}; {_REFUSED}",
            )
        for key, value in node.items():
            if key == "config":
                self.config(value, kind, layer, attr)
            elif key == "inbound_nodes":
                self.inbound(value, layer)
            elif key == "compile_config" and at_root:
                continue  # loaded with compile=False: Keras never reads it
            elif key not in ("class_name", "module", "registered_name"):
                self.value(value, key, layer, attr if kind is not LAYER else key)

    def config(self, config: Any, kind: Kind, layer: str, attr: str) -> None:
        if kind is LAYER and isinstance(config, dict):
            for key, value in config.items():
                self.value(value, key, layer, key)
        elif kind is LAYER and isinstance(config, list):  # old Sequential: a list of layers
            self.value(config, "layers", layer, "layers")
        else:
            self.value(config, None, layer, attr, inside=True)

    def function(self, node: dict[str, Any], kind: Kind, layer: str, attr: str) -> None:
        name = node.get("config")
        module = node.get("module")
        registered = node.get("registered_name")
        if not kind.function_modules or not isinstance(name, str) or name not in kind.functions:
            raise self.unknown_function(name, kind, layer, attr)
        if module not in kind.function_modules and module is not None:
            raise self.refuse(
                layer,
                f"{attr}.module",
                f"function {name!r} from module {module!r}; {_REFUSED}",
            )
        if registered not in (None, "function", name):
            raise self.refuse(
                layer,
                f"{attr}.registered_name",
                f"function {name!r} with registered_name {registered!r}; {_REFUSED}",
            )

    def value(
        self, value: Any, key: str | None, layer: str, attr: str, *, inside: bool = False
    ) -> None:
        """Check one config value found under ``key`` (``inside``: within an object)."""
        kind = None if inside else kind_of(key)
        if isinstance(value, dict):
            if "class_name" in value:
                if kind is None:
                    raise self.refuse(
                        layer,
                        attr,
                        f"holds a serialized {value.get('class_name')!r} object where "
                        f"bnnconvert expects none; {_REFUSED}",
                    )
                self.object(value, kind, layer, attr)
                return
            for k, v in value.items():
                self.value(v, k, layer, attr, inside=inside)
        elif isinstance(value, list):
            for v in value:
                self.value(v, key, layer, attr, inside=inside)
        elif isinstance(value, str) and kind is not None and kind is not LAYER:
            if kind is POLICY:
                return  # a dtype name ("float32") is data, not an object
            if value not in kind.functions:
                raise self.unknown_function(value, kind, layer, attr)

    def inbound(self, nodes: Any, layer: str) -> None:
        """Inbound nodes: nested lists/dicts of entries ``[layer, node, tensor(, kwargs)]``."""
        for entry in self.entries(nodes, layer):
            source, _, value, *kwargs = entry
            if source == "_CONSTANT_VALUE":
                if not _is_number(value):
                    raise self.refuse(
                        layer,
                        "inbound_nodes",
                        f"a constant input of type {type(value).__name__} (only numbers "
                        f"are accepted); {_REFUSED}",
                    )
            elif not (isinstance(value, int) and isinstance(entry[1], int)):
                raise self.refuse(layer, "inbound_nodes", "a tensor index is not a number")
            for kw in kwargs:
                self.call_kwargs(kw, layer)

    def graph(self, model: dict[str, Any]) -> None:
        """Refuse a Functional graph Keras cannot rebuild: it would loop forever trying.

        tf-keras rebuilds a Functional model by calling each layer once all the
        nodes it reads exist; a reference to a missing layer or node, or a
        cycle, never becomes ready and its loop never ends. So every reference
        must name a layer of this model and one of its nodes (an ``InputLayer``
        has one, any other layer one per inbound node), and the nodes must form
        no cycle.
        """
        layers = model.get("layers")
        if not isinstance(layers, list):
            return
        nodes: dict[str, list[list[tuple[str, int]]]] = {}
        for entry in layers:
            name = entry.get("name") if isinstance(entry, dict) else None
            if not isinstance(name, str) or name in nodes:
                raise self.refuse(str(name), "name", f"a missing or repeated name; {_REFUSED}")
            inbound = entry.get("inbound_nodes") or []
            if not isinstance(inbound, list):
                raise self.refuse(name, "inbound_nodes", f"not a list of nodes; {_REFUSED}")
            reads = [self.references(node, name) for node in inbound]
            nodes[name] = [[]] if entry.get("class_name") == "InputLayer" else reads
        for name, produced in nodes.items():
            for reads in produced:
                self.resolve(reads, nodes, name, "inbound_nodes")
        for key in ("input_layers", "output_layers"):
            self.resolve(self.references(model.get(key, []), _ROOT), nodes, _ROOT, key)
        self.acyclic(nodes)

    def references(self, node: Any, layer: str) -> list[tuple[str, int]]:
        """``(layer, node index)`` of every tensor one node reads (constants left out)."""
        refs = []
        for entry in self.entries(node, layer):
            if entry[0] != "_CONSTANT_VALUE":
                refs.append((entry[0], entry[1]))
            for kw in entry[3:]:
                refs += self.kwarg_references(kw)
        return refs

    def kwarg_references(self, kwargs: Any) -> list[tuple[str, int]]:
        """Tensor references ``[layer, node, tensor]`` among a call's keyword arguments."""
        if isinstance(kwargs, list) and len(kwargs) == 3 and isinstance(kwargs[0], str):
            return [(kwargs[0], kwargs[1])]
        if isinstance(kwargs, dict):
            kwargs = list(kwargs.values())
        if isinstance(kwargs, list):
            return [ref for value in kwargs for ref in self.kwarg_references(value)]
        return []

    def resolve(
        self, reads: list[tuple[str, int]], nodes: dict[str, list[Any]], layer: str, attr: str
    ) -> None:
        for source, index in reads:
            if source not in nodes or not 0 <= index < len(nodes[source]):
                raise self.refuse(
                    layer,
                    attr,
                    f"reads node {index} of layer {source!r}, which the model does not have "
                    f"(Keras would wait for it forever); {_REFUSED}",
                )

    def acyclic(self, nodes: dict[str, list[list[tuple[str, int]]]]) -> None:
        done: set[tuple[str, int]] = set()
        for start in ((n, k) for n, produced in nodes.items() for k in range(len(produced))):
            path: list[tuple[str, int]] = []
            on_path: set[tuple[str, int]] = set()
            stack: list[tuple[tuple[str, int], bool]] = [(start, False)]
            while stack:
                node, leaving = stack.pop()
                if leaving:
                    on_path.discard(node)
                    path.pop()
                    done.add(node)
                    continue
                if node in done:
                    continue
                if node in on_path:
                    raise self.refuse(
                        node[0],
                        "inbound_nodes",
                        f"its inputs depend on its own output (a cycle; Keras would wait "
                        f"for it forever); {_REFUSED}",
                    )
                on_path.add(node)
                path.append(node)
                stack.append((node, True))
                stack += [(ref, False) for ref in nodes[node[0]][node[1]]]

    def entries(self, nodes: Any, layer: str) -> Iterator[list[Any]]:
        if isinstance(nodes, list) and 3 <= len(nodes) <= 4 and isinstance(nodes[0], str):
            yield nodes
        elif isinstance(nodes, list):
            for node in nodes:
                yield from self.entries(node, layer)
        elif isinstance(nodes, dict):
            for node in nodes.values():
                yield from self.entries(node, layer)
        else:
            raise self.refuse(
                layer,
                "inbound_nodes",
                f"unexpected entry {str(nodes)[:60]!r} (not [layer, node, tensor, kwargs]); "
                f"{_REFUSED}",
            )

    def call_kwargs(self, kwargs: Any, layer: str) -> None:
        """Call arguments: numbers, booleans, None, or tensor references ``[name, i, j]``."""
        if isinstance(kwargs, dict):
            for value in kwargs.values():
                self.call_kwargs(value, layer)
        elif isinstance(kwargs, list) and len(kwargs) == 3 and isinstance(kwargs[0], str):
            if not all(isinstance(i, int) for i in kwargs[1:]):
                raise self.refuse(layer, "inbound_nodes", "a tensor index is not a number")
        elif isinstance(kwargs, list):
            for value in kwargs:
                self.call_kwargs(value, layer)
        elif not _is_number(kwargs):
            raise self.refuse(
                layer,
                "inbound_nodes",
                f"a call argument of type {type(kwargs).__name__} (only numbers and tensors "
                f"are accepted); {_REFUSED}",
            )

    def unknown_class(
        self, name: Any, kind: Kind, layer: str, attr: str, node: Any = None
    ) -> CheckpointProblem:
        carrier = _code_carrier(node.get("config")) if kind is LAYER and node else None
        if carrier is not None and name not in _RUNS_CODE:
            where, inner = carrier
            return self.refuse(
                layer,
                where,
                f"a {inner} runs {_RUNS_CODE[inner]}, {_NEVER_RUN}",
            )
        if kind is LAYER and name in _RUNS_CODE:
            return self.refuse(
                layer,
                attr,
                f"a {name} layer runs {_RUNS_CODE[name]}, {_NEVER_RUN}",
            )
        return self.unknown(f"class {name!r}", name, kind, layer, attr)

    def unknown_function(self, name: Any, kind: Kind, layer: str, attr: str) -> CheckpointProblem:
        return self.unknown(f"function {name!r}", name, kind, layer, attr)

    def unknown(self, what: str, name: Any, kind: Kind, layer: str, attr: str) -> CheckpointProblem:
        if name == "__lambda__":
            return self.refuse(layer, attr, f"a Python lambda stored as bytecode, {_NEVER_RUN}")
        hint = larq_equivalent(str(name)) if kind is QUANTIZER else None
        fix = f"use the built-in {hint}" if hint else f"use a built-in Keras/Larq {kind.label}"
        return self.refuse(
            layer,
            attr,
            f"{kind.label} {what} is not a built-in Keras/Larq {kind.label} bnnconvert "
            f"loads (custom code is never run); {fix}, or pass {self.trust_hint} "
            "if you trust this checkpoint",
        )


CUSTOM_OBJECTS_HINT = "trust_checkpoint= with custom_objects= FILE.py"


def check_config(config: Any, source: str, trust_hint: str = CUSTOM_OBJECTS_HINT) -> None:
    """Refuse a model config naming anything not on the list (see module docstring).

    Arguments:
        config: the decoded JSON of a Keras model config (a dict with
            ``class_name`` and ``config``).
        source: file name for messages.
        trust_hint: how to load an unknown class or function anyway, for messages.

    Raises:
        CheckpointProblem: one line naming the layer, the attribute and why.
    """
    if not isinstance(config, dict) or "class_name" not in config:
        raise CheckpointProblem(f"{source}: the model config is not a Keras model; refused")
    checker = _Checker(source, trust_hint)
    checker.object(config, LAYER, _ROOT, "class_name")
    for model in _functional_configs(config):
        checker.graph(model)


def _functional_configs(node: Any) -> Iterator[dict[str, Any]]:
    """The ``config`` of every Functional model in a model config, nested ones included."""
    if isinstance(node, dict):
        inner = node.get("config")
        if node.get("class_name") == "Functional" and isinstance(inner, dict):
            yield inner
        for value in node.values():
            yield from _functional_configs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _functional_configs(value)


# --- after loading -------------------------------------------------------------


def is_fake_quant_op(node: Mapping[str, Any]) -> bool:
    """Whether a layer config is a ``TFOpLambda`` calling a ``tf.quantization`` fake-quant op.

    Only the exact form tf-keras writes is accepted: its module, registered
    name and config keys, and a ``function`` in :data:`FAKE_QUANT_FUNCTIONS`
    (Keras resolves that string inside the ``tf`` namespace, so no other
    function can be reached through it). Its call arguments are checked like
    any layer's inbound nodes (numbers and tensors only).
    """
    config = node.get("config")
    return (
        node.get("class_name") == "TFOpLambda"
        and node.get("module") in (None, _TF_OP_MODULE)
        and node.get("registered_name") in (None, "TFOpLambda")
        and isinstance(config, dict)
        and set(config) <= _TF_OP_CONFIG_KEYS
        and config.get("function") in FAKE_QUANT_FUNCTIONS
        and isinstance(config.get("name", ""), str)
        and isinstance(config.get("dtype", "float32"), str)
    )


def _allowed_types(keras: Any, lq: Any) -> tuple[set[type], set[Callable[..., Any]]]:
    classes: set[type] = {getattr(keras.layers, name) for name in KERAS_LAYERS}
    classes |= {getattr(lq.layers, name) for name in LARQ_LAYERS}
    classes |= {getattr(lq.quantizers, name) for name in LARQ_QUANTIZERS}
    functional = importlib.import_module(_MODELS["Functional"]).Functional
    classes |= {keras.Model, keras.Sequential, functional}
    functions = {keras.activations.get(name) for name in ACTIVATIONS}
    functions |= {getattr(lq.quantizers, name, None) for name in QUANTIZER.functions} - {None}
    return classes, functions


_FUNCTION_ATTRS = (
    "activation",
    "input_quantizer",
    "kernel_quantizer",
    "depthwise_quantizer",
    "pointwise_quantizer",
)


def _layers(model: Any) -> Iterator[Any]:
    yield model
    yield from model.submodules


def check_loaded_model(model: Any, keras: Any, lq: Any, source: str) -> None:
    """Check that a loaded model holds only listed layers, quantizers and activations.

    Raises:
        CheckpointProblem: naming the first layer or attribute not on the list.
    """
    classes, functions = _allowed_types(keras, lq)
    for layer in _layers(model):
        if not isinstance(layer, keras.layers.Layer):
            continue
        name = getattr(layer, "name", "?")
        if type(layer).__name__ == "TFOpLambda" and is_fake_quant_op(
            {"class_name": "TFOpLambda", "config": layer.get_config()}
        ):
            continue
        if type(layer) not in classes:
            raise CheckpointProblem(
                f"{source}: layer {name!r} loaded as {type(layer).__name__}, which is not on "
                f"bnnconvert's list of Keras/Larq layers; {_REFUSED}"
            )
        for attr in _FUNCTION_ATTRS:
            fn = getattr(layer, attr, None)
            if fn is None or isinstance(fn, keras.layers.Layer):
                continue
            if fn not in functions:
                raise CheckpointProblem(
                    f"{source}: layer {name!r} attribute {attr!r} loaded as "
                    f"{getattr(fn, '__name__', type(fn).__name__)!r}, which is not on "
                    f"bnnconvert's list; {_REFUSED}"
                )
