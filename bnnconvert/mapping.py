"""Which flatbuffer ops and tensors each Keras layer became, and what each tensor means.

The one place that maps a tf-keras model to the LCE flatbuffer converted from
it: the audit and ``validate`` use it and parse no tensor names of their own;
passes and rewrites that change what a tensor means record it in the model
(:mod:`bnnconvert.pass_records`) for it to read.

API::

    from bnnconvert.mapping import map_layers, VALUE, THRESHOLD, SIGNS

    lm = map_layers(keras_model, flatbuffer)   # bytes or ir.Model (subgraph 0)
    lm.layers["bn2"]          # LayerOps, every top-level Keras layer, in Keras order (with
                              # a Sequential model's InputLayer, which model.layers hides)
    lm.layers["bn2"].ops      # op indices the layer took part in (fused ops shared)
    lm.layers["bn2"].own_ops  # op indices it owns (each op has one owner; run these)
    lm.layers["bn2"].inputs   # TensorRefs its own ops read from outside them
    lm.layers["bn2"].output   # TensorRef of its output where its meaning is kept, or None
    lm.layers["bn2"].signs    # TensorRef of its output's bitpacked signs, or None
    lm.layers["qc"].fused_into  # with output None: the layer whose output holds its result
    lm.groups()               # LayerGroups: fused layers + ops + inputs + one output
    lm.tensor(t)              # TensorRef for flatbuffer tensor t, or None
    lm.owner[op]              # the layer an op's MACs and findings count for
    lm.outputs                # Keras output name -> graph output tensor (by name, never position)
    lm.inputs                 # Keras InputLayer name -> graph input tensor (feed the model input)
    lm.unmapped_ops()         # ops traced to no layer
    lm.folds                  # FoldRecords of the fold_sign_scale pass, read from the model
    lm.rewrites               # QuantDense -> 1x1 conv rewrites recorded in the model
    lm.index                  # the GraphIndex (producers, consumers) it was built with

A :class:`TensorRef` says what flatbuffer tensor ``tensor`` holds for Keras
layer ``layer``'s output ``y`` (one sample, NHWC):

- ``VALUE``: ``y`` itself (float; an int8 tensor holds it quantized with the
  tensor's own scale and zero point);
- ``THRESHOLD``: a float ``z`` with ``z < 0`` exactly where ``y < 0``, except
  in ``flipped_channels`` where it is inverted (``z < 0`` where ``y >= 0``):
  a batch norm folded into a threshold before a sign by ``fold_sign_scale``;
  compare it as signs, not values;
- ``SIGNS``: ``y``'s signs bitpacked along channels (bit 1 = negative, int32
  words, :func:`bnnconvert.ir.unpack_bits`), inverted in ``flipped_channels``.

:func:`keras_signs` and :func:`flatbuffer_signs` turn either side into
comparable +-1 arrays; :func:`as_flatbuffer_input` turns a Keras value into
what the tensor holds, to run ops on Keras's own values.

How the mapping is found. LCE names activation tensors after the TensorFlow
ops they came from, ``<model>/<layer>/<op>``; ops fused together get the
names joined with ``;`` and names are cut at 50 characters. A ``LceBconv2d``
is named through its input (its layer's input quantizer), because a bconv
writing bitpacked output takes the *next* layer's name; a sign shared by
sibling layers (one ``LceQuantize`` read by several) is named after one of
them only, so its readers go by their own output names. Graph outputs
(``StatefulPartitionedCall:k``) are matched to Keras outputs through the
signature (Keras output names) or the ``:k`` in their name; constants'
names help where activations have none. Ops with no name left, or a name
cut to a prefix several layers share (long Keras names of nested models),
are traced through the graph: op kind, output shape and the layers they read
(``LayerMap._owner_by_structure``); layers without ops are given the
compatible op of a Keras neighbour (a batch norm fused into the conv before
it). A tensor belongs to the most downstream Keras layer among those its op
computes whose output shape it has (a reshape or int8 (de)quantization of a
layer's value holds that value). Passes that change what a tensor means record
it in the model (:mod:`bnnconvert.pass_records`), and so does the
``QuantDense`` -> 1x1 conv rewrite; this module reads those records (the
rewrite's reshapes, fused by LCE into the op next to them, lend that op the
dense layer's name: it still computes its own layer).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnnconvert import ir
from bnnconvert.graph import (
    AFFINE_OPS,
    BINARY_CONV,
    BINARY_MAX_POOL,
    DEQUANTIZE,
    KERNEL_OPS,
    MAX_POOL_OPS,
    QUANTIZE,
    GraphIndex,
)
from bnnconvert.pass_records import read_records

VALUE = "value"
THRESHOLD = "threshold-before-sign"
SIGNS = "bitpacked-signs"
UNKNOWN = "unknown"  # a tensor no Keras layer output is known to correspond to
NAME_LIMIT = 50  # LCE cuts tensor names to this many characters (then adds a counter)

_BITPACKING_OPS = (QUANTIZE, BINARY_CONV, BINARY_MAX_POOL)
_TYPE_CASTS = ("QUANTIZE", "DEQUANTIZE")  # TFLite's float <-> int8 conversions
# Ops that structure leaves unowned (no layer of their output's shape) belong to their
# reader: a QUANTIZE of a graph input, a RESHAPE into a dense layer rebuilt as a 1x1 conv,
# a conv's own padding; an LceDequantize (its reader's input signs, as +-1) always.
_READER_OWNED = (*_TYPE_CASTS, "RESHAPE", "PAD", "PADV2", DEQUANTIZE)
_SAME_VALUE_OPS = (*_TYPE_CASTS, "RESHAPE", "SQUEEZE")  # the value of their input, as is
_BIASED_KERNEL_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")  # bias: input 2
_IDENTITY_AT_INFERENCE = ("Dropout", "SpatialDropout2D", "GaussianNoise", "ActivityRegularization")


@dataclass(frozen=True)
class TensorRef:
    """What flatbuffer tensor ``tensor`` holds: ``meaning`` of Keras layer ``layer``'s output."""

    tensor: int
    name: str
    layer: str
    meaning: str
    flipped_channels: tuple[int, ...] = ()


@dataclass
class LayerOps:
    """One top-level Keras layer in the flatbuffer.

    ``mapped_by``: "name" (some op carries its name), "structure" (inferred
    from the graph: less certain) or "none". ``output`` is None when the
    layer's result exists only after a later layer was applied to it
    (``fused_into`` names that layer), or when it has no op at all (``note``).
    """

    name: str
    class_name: str
    ops: list[int]
    own_ops: list[int]
    mapped_by: str
    inputs: list[TensorRef] = field(default_factory=list)
    output: TensorRef | None = None
    signs: TensorRef | None = None
    fused_into: str | None = None
    note: str = ""


@dataclass
class LayerGroup:
    """Keras layers computed together by ``ops``: feed ``inputs``, compare ``output``.

    ``layers`` in Keras order; the last one is ``output.layer``.
    """

    layers: list[str]
    ops: list[int]
    inputs: list[TensorRef]
    output: TensorRef


@dataclass(frozen=True)
class FoldRecord:
    """A batch norm folded into a threshold before a sign (``fold_sign_scale``)."""

    threshold: int | None  # the ADD output (None: the ADD was dropped, all thresholds 0)
    signs: int  # the LceQuantize output
    stood_for: str  # name of the tensor that held the batch norm's output before
    flipped_channels: tuple[int, ...]


# --- the Keras side -------------------------------------------------------------------


class KerasGraph:
    """Top-level layers of a functional/sequential tf-keras model and their edges."""

    def __init__(self, model: Any) -> None:
        self.model = model
        # A Sequential model hides its InputLayer from ``model.layers``: put it first.
        hidden = [
            layer
            for layer in getattr(model, "_input_layers", [])
            if layer not in model.layers and class_name(layer) == "InputLayer"
        ]
        self.layers = {layer.name: layer for layer in [*hidden, *model.layers]}
        self.order = {name: k for k, name in enumerate(self.layers)}
        ids = {id(layer): name for name, layer in self.layers.items()}
        self.inbound: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, layer in self.layers.items():
            for node in getattr(layer, "_inbound_nodes", []):
                parents = node.inbound_layers
                parents = parents if isinstance(parents, (list, tuple)) else [parents]
                for parent in parents:
                    if id(parent) in ids and ids[id(parent)] not in self.inbound[name]:
                        self.inbound[name].append(ids[id(parent)])
        self.outbound: dict[str, list[str]] = {name: [] for name in self.layers}
        for name, parents in self.inbound.items():
            for parent in parents:
                self.outbound[parent].append(name)
        self.output_layers = [n for n in getattr(model, "output_names", []) if n in self.layers]
        self.input_layers = [
            n for n, layer in self.layers.items() if class_name(layer) == "InputLayer"
        ]

    def ancestors(self, name: str, hops: int) -> Iterable[str]:
        """Layers up to ``hops`` steps upstream, nearest first."""
        frontier = [name]
        for _ in range(hops):
            frontier = [p for n in frontier for p in self.inbound.get(n, [])]
            yield from frontier

    def downstream(self, name: str, hops: int) -> list[str]:
        """``name``, then the layers up to ``hops`` steps downstream, nearest first."""
        found, frontier = [name], [name]
        for _ in range(hops):
            frontier = sorted(
                {c for n in frontier for c in self.outbound.get(n, [])} - set(found),
                key=self.order.__getitem__,
            )
            found += frontier
        return found

    def output_shape(self, name: str) -> tuple[int | None, ...] | None:
        """The layer's output shape without the batch axis (None if it has several)."""
        try:
            shape = self.layers[name].output_shape
        except (AttributeError, RuntimeError):
            return None
        if isinstance(shape, list):
            return tuple(shape[0][1:]) if len(shape) == 1 else None
        return tuple(shape[1:])


def class_name(layer: Any) -> str:
    return type(layer).__name__


def is_quantized(layer: Any) -> bool:
    """A Larq quantized layer (``QuantConv2D``, ``QuantDense``, ...), by class or attribute.

    By class name too, because a layer whose quantizers were lost on saving
    (revived by Keras from a SavedModel) has no ``input_quantizer``.
    """
    return hasattr(layer, "input_quantizer") or class_name(layer).startswith("Quant")


def _is_quantizer(layer: Any) -> bool:
    """A Larq quantizer used as a layer (``lq.quantizers.SteSign()(x)``)."""
    return type(layer).__module__.startswith("larq.quantizers")


def _has_kernel(layer: Any) -> bool:
    return any(hasattr(layer, a) for a in ("kernel", "depthwise_kernel")) or class_name(
        layer
    ).startswith("Quant")


def _adds_a_bias(layer: Any) -> bool:
    """Whether ``layer``'s output has a non-zero additive term: a batch norm's shift
    ``beta - mean * gamma / sqrt(var + eps)``, or a kernel layer's bias."""
    if class_name(layer) == "BatchNormalization":
        gamma = np.asarray(layer.gamma) if layer.scale else 1.0
        beta = np.asarray(layer.beta) if layer.center else 0.0
        std = np.sqrt(np.asarray(layer.moving_variance) + layer.epsilon)
        return bool(np.any(beta - np.asarray(layer.moving_mean) * gamma / std))
    bias = getattr(layer, "bias", None) if getattr(layer, "use_bias", False) else None
    return bias is not None and bool(np.any(np.asarray(bias)))


def can_own(layer: Any, opcode: str) -> bool:
    """Whether ``layer`` can be the layer an op of type ``opcode`` computes."""
    cls = class_name(layer)
    if opcode in KERNEL_OPS:
        return _has_kernel(layer) and (opcode != BINARY_CONV or is_quantized(layer))
    if opcode in MAX_POOL_OPS:
        return "MaxPool" in cls
    if opcode == "AVERAGE_POOL_2D":
        return "AveragePool" in cls and "Global" not in cls
    if opcode == "CONCATENATION":
        return cls == "Concatenate"
    return True


# --- tensor names ---------------------------------------------------------------------


def layers_starting(part: str, known: Iterable[str]) -> list[str]:
    """Keras layers whose names a cut tensor-name component could stand for.

    LCE's converter cuts a tensor name to :data:`NAME_LIMIT` characters and
    appends a counter to keep tensor names unique (``<cut name>2``), so a
    component stands for the layers it starts, or, failing that, the layers
    its text before the trailing digits starts (where the caller cannot tell
    the counter apart: :func:`layers_cut_in_name` drops it first).
    """
    starting = [n for n in known if n.startswith(part)]
    stem = part.rstrip("0123456789")
    if not starting and stem and stem != part:
        starting = [n for n in known if n.startswith(stem)]
    return sorted(starting)


def layers_in_name(name: str, model_name: str, known: Iterable[str]) -> list[str]:
    """Keras layer names in a tensor name, in the order they appear.

    Each ``;`` segment ``<model>/<layer>/...`` names a layer. The last segment
    may be cut by the converter: inside the op part it still names its layer;
    cut inside the layer name (see :func:`layers_cut_in_name`) it counts only if
    exactly one layer starts so.
    Anything after ``#`` (bnnconvert's renames) is ignored.
    """
    known = set(known)
    found: list[str] = []
    segments = name.split(";")
    for k, segment in enumerate(segments):
        parts = segment.split("#")[0].split("/")
        if len(parts) < 2 or parts[0] != model_name:
            continue
        layer: str | None = parts[1] if parts[1] in known and len(parts) >= 3 else None
        if layer is None and k == len(segments) - 1:
            starting = layers_cut_in_name(name, model_name, known)
            layer = starting[0] if len(starting) == 1 else None
        if layer is not None and layer not in found:
            found.append(layer)
    return found


def layers_cut_in_name(name: str, model_name: str, known: Iterable[str]) -> list[str]:
    """The layers a tensor name cut inside its layer name could stand for (none if not cut).

    LCE cuts a tensor name to its first :data:`NAME_LIMIT` characters and
    appends a counter to the later ones cut the same; only the last ``;``
    segment can be cut: ``<model>/<start of a layer name>`` (see
    :func:`layers_starting`). The counter is dropped first: it is no part of
    a layer name even where it reads like one (``..._convolution_`` + ``1``
    is not layer ``..._convolution_1``). Several layers sharing a long prefix
    make such a name ambiguous; the mapping then goes by the graph's structure.
    """
    name = name.split("#")[0]
    if len(name) > NAME_LIMIT and name[NAME_LIMIT:].isdigit():
        name = name[:NAME_LIMIT]
    parts = name.split(";")[-1].split("/")
    if len(parts) != 2 or parts[0] != model_name or not parts[1]:
        return []
    return layers_starting(parts[1], known)


# --- the mapping ----------------------------------------------------------------------


class LayerMap:
    """The mapping of one Keras model onto one flatbuffer (see the module docstring)."""

    def __init__(self, keras_model: Any, model: ir.Model) -> None:
        self.model = model
        self.keras = KerasGraph(keras_model)
        self.index = GraphIndex(model)
        self.graph = self.index.graph
        records = read_records(model)
        self._aliases = self._rewrite_aliases(records)
        self.folds = self._fold_records(records)
        self.rewrites = records.get("quantdense_as_conv", [])
        self._reshapes = {  # rewritten layer -> the names of its reshapes in and out
            str(r.get("layer")): (str(r.get("reshape_in")), str(r.get("reshape_out")))
            for r in self.rewrites
        }
        self.layer_ops: dict[str, list[int]] = {}
        self.named: dict[str, bool] = {}
        self.owner: dict[int, str] = {}
        self.notes: dict[str, str] = {}
        self.outputs = self._graph_outputs()
        self.inputs = dict(zip(self.keras.input_layers, self._graph_inputs(), strict=False))
        self._attribute_ops()
        self._continue_affine_chains()
        self._own_quantizers_by_reader()
        self._map_leftover_layers()
        self._tensors: dict[int, TensorRef] = {}
        self._assign_meanings()
        self.layers = {name: self._layer_ops(name) for name in self.keras.layers}

    # -- public queries

    def tensor(self, t: int) -> TensorRef | None:
        """What flatbuffer tensor ``t`` holds, if it corresponds to a Keras layer output."""
        return self._tensors.get(t)

    def unmapped_ops(self) -> list[int]:
        """Ops attributed to no Keras layer."""
        mapped = {i for ops in self.layer_ops.values() for i in ops}
        return [i for i in range(len(self.graph.operators)) if i not in mapped]

    def groups(self) -> list[LayerGroup]:
        """Layers that must run together, each group ending at a layer with an output tensor."""
        members: dict[str, list[str]] = {}
        for name in self.layers:
            end = name
            seen = {name}
            while self.layers[end].output is None and self.layers[end].fused_into:
                end = self.layers[end].fused_into  # type: ignore[assignment]
                if end in seen:
                    break
                seen.add(end)
            members.setdefault(end, []).append(name)
        found = []
        for end, names in members.items():
            output = self.layers[end].output
            if output is None or output.meaning == UNKNOWN:
                continue
            ops = sorted({i for n in names for i in self.layers[n].own_ops})
            if not ops:
                continue
            found.append(LayerGroup(names, ops, self._inputs_of(ops), output))
        return sorted(found, key=lambda g: g.ops[-1])

    # -- records written by rewrites

    def _rewrite_aliases(self, records: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
        from bnnconvert.passes.int8_activations import WRAPPER_SUFFIX

        # --int8-activations wraps a float layer X in fake-quant nodes named X_int8.
        aliases = {
            name + WRAPPER_SUFFIX: name
            for name in self.keras.layers
            if name + WRAPPER_SUFFIX not in self.keras.layers
        }
        for r in records.get("quantdense_as_conv", []):
            layer = r.get("layer")
            if layer in self.keras.layers:
                for key in ("reshape_in", "reshape_out"):
                    if isinstance(r.get(key), str) and r[key] not in self.keras.layers:
                        aliases[r[key]] = layer
        return aliases

    def _fold_records(self, records: dict[str, list[dict[str, Any]]]) -> list[FoldRecord]:
        by_name: dict[str, int] = {}
        for t, tensor in enumerate(self.graph.tensors):
            by_name.setdefault(tensor.name, t)
        folds = []
        for r in records.get("fold_sign_scale", []):
            signs = by_name.get(str(r.get("signs")))
            threshold = by_name.get(str(r.get("threshold"))) if r.get("threshold") else None
            if signs is None or (r.get("threshold") and threshold is None):
                continue  # a record of tensors a later rewrite removed
            flipped = tuple(int(c) for c in r.get("flipped_channels", []))
            folds.append(FoldRecord(threshold, signs, str(r.get("stood_for", "")), flipped))
        return folds

    # -- ops -> layers

    def _named(self, t: int) -> list[str]:
        if t < 0:
            return []
        known = [*self.keras.layers, *self._aliases]
        found = layers_in_name(self.graph.tensors[t].name, self.keras.model.name, known)
        return list(dict.fromkeys(self._aliases.get(n, n) for n in found))

    def _add(self, layer: str, op: int, by_name: bool) -> None:
        ops = self.layer_ops.setdefault(layer, [])
        if op not in ops:
            ops.append(op)
            ops.sort()
        self.named[layer] = self.named.get(layer, False) or by_name

    def _graph_outputs(self) -> dict[str, int]:
        """Keras output name -> graph output tensor, from the signature or ``...:k`` names."""
        names = self.keras.output_layers
        for sig in self.model.signature_defs:
            if sig.subgraph_index == 0 and set(sig.outputs) == set(names):
                return {n: sig.outputs[n] for n in names}
        found: dict[str, int] = {}
        for t in self.graph.outputs:
            _, colon, k = self.graph.tensors[t].name.rpartition(":")
            if colon and k.isdigit() and int(k) < len(names):
                found.setdefault(names[int(k)], t)
        if len(found) < len(names) and len(names) == 1 and len(self.graph.outputs) == 1:
            found = {names[0]: self.graph.outputs[0]}
        return found

    def _attribute_ops(self) -> None:
        graph, layers = self.graph, self.keras.layers
        unnamed: list[int] = []
        for i, op in enumerate(graph.operators):
            if op.opcode == BINARY_CONV:
                named = self._binary_conv_named(i)
            elif op.opcode == DEQUANTIZE and self._shared_sign(op.inputs[0]):
                named = []  # named after the shared sign: left to its reader
            else:
                named = [n for t in op.outputs for n in self._named(t)]
                if op.opcode != "RESHAPE":
                    named = self._fused_reshapes_last(op.outputs, named)
            if not named:  # weights are sometimes named after their layer
                named = [n for t in op.inputs if self.index.is_constant(t) for n in self._named(t)]
            if not named:
                unnamed.append(i)
                continue
            for layer in named:
                self._add(layer, i, True)
            owners = [n for n in named if can_own(layers[n], op.opcode)]
            if owners:
                self.owner[i] = owners[0]
                continue
            # Named after a layer that cannot compute it (a binary max-pool takes the
            # next layer's quantizer name): find the owner upstream.
            for candidate in self.keras.ancestors(named[0], hops=3):
                if (
                    can_own(layers[candidate], op.opcode)
                    and class_name(layers[candidate]) != "InputLayer"
                ):
                    self._add(candidate, i, False)
                    self.owner[i] = candidate
                    break
            else:
                self.owner[i] = named[0]
        for i in unnamed:
            owner = self._owner_by_structure(i)
            if owner is not None:
                self._add(owner, i, False)
                self.owner[i] = owner
        for i in reversed(unnamed):  # e.g. a QUANTIZE of a graph input: its reader's
            if i in self.owner or graph.operators[i].opcode not in _READER_OWNED:
                continue
            outputs = graph.operators[i].outputs
            readers = {self.owner.get(r) for t in outputs for r in self.index.consumers(t)}
            if len(readers) == 1 and None not in readers:
                (reader,) = readers
                self._add(reader, i, False)  # type: ignore[arg-type]
                self.owner[i] = reader  # type: ignore[assignment]

    def _fused_reshapes_last(self, tensors: list[int], named: list[str]) -> list[str]:
        """``named`` with the layers named only by a rewrite's ``Reshape`` put last.

        LCE fuses the ``Reshape`` that the ``QuantDense`` -> 1x1 conv rewrite
        puts in front of (or after) the conv into the op next to it (a global
        pooling's ``MEAN``), whose tensor then carries the dense layer's name
        first (``<model>/<dense>/<dense>_to_1x1/Reshape;<model>/gap/Mean``); the
        op computes the other layer.
        """
        model, known = self.keras.model.name, [*self.keras.layers, *self._aliases]
        really: set[str] = set()
        for t in tensors:
            name = self.graph.tensors[t].name
            for segment in name.split("#")[0].split(";"):
                if not self._names_a_reshape(segment, cut=len(name) >= NAME_LIMIT):
                    really.update(
                        self._aliases.get(n, n) for n in layers_in_name(segment, model, known)
                    )
        return sorted(named, key=lambda n: n not in really)

    def _names_a_reshape(self, segment: str, cut: bool) -> bool:
        """Name segment ``<model>/<dense>/<reshape>/...`` is a rewrite's reshape.

        ``cut``: the name may be cut inside the reshape's name (``<dense>_to_1``).
        """
        parts = segment.split("/")
        if len(parts) < 3 or parts[0] != self.keras.model.name:
            return False
        layer, part = parts[1], parts[2]
        return any(
            r == part or (cut and len(parts) == 3 and len(part) > len(layer) and r.startswith(part))
            for r in self._reshapes.get(layer, ())
        )

    def _shared_sign(self, t: int) -> bool:
        """Tensor ``t`` is an ``LceQuantize`` output read by several ops (one sign, many readers).

        LCE emits one sign for quantized layers that read the same tensor with
        the same sign, named after one of them: the name says nothing about
        which layer each reader computes.
        """
        producer = self.index.producer(t) if t >= 0 else None
        return (
            producer is not None
            and self.graph.operators[producer].opcode == QUANTIZE
            and len(self.index.consumers(t)) > 1
        )

    def _binary_conv_named(self, i: int) -> list[str]:
        """The layers an ``LceBconv2d``'s tensor names point at, the layer it computes first.

        It is named through its input (its layer's input quantizer) because a
        bitpacked output takes the next layer's name; a float output carries
        its own layer's name (after the batch norm fused into it). A sign
        shared by sibling layers is named after one of them only: then the op
        computes the first sibling its output name names (float output; the
        shared sign's name may follow) or the one upstream of the layer its
        output name names (bitpacked output), else the one sibling whose
        output its output fits; none if that leaves several (the structure
        decides).
        """
        op, layers = self.graph.operators[i], self.keras.layers
        output = op.outputs[0]
        bitpacked = self.graph.tensors[output].dtype == "int32"
        by_input, by_output = self._named(op.inputs[0]), self._named(output)
        siblings = list(
            dict.fromkeys(
                s
                for q in by_input
                for p in self.keras.inbound.get(q, [])
                for s in self.keras.outbound.get(p, [])
                if can_own(layers[s], BINARY_CONV)
            )
        )
        if not self._shared_sign(op.inputs[0]) or not siblings:
            return list(dict.fromkeys(by_input + ([] if bitpacked else by_output)))
        if bitpacked:
            said = [s for s in siblings if any(s in self.keras.ancestors(n, 3) for n in by_output)]
            fitting = [s for s in siblings if self._packs(s, output)]
        else:
            said = [n for n in by_output if n in siblings][:1]  # a sibling's sign may follow
            fitting = [s for s in siblings if self._fits(s, output)]
        own = said if len(said) == 1 else fitting if len(fitting) == 1 else []
        if not own:
            return []
        others = [] if bitpacked else [n for n in by_output if n not in siblings]
        return list(dict.fromkeys(own + others))

    def _owner_by_structure(self, i: int) -> str | None:
        """The layer op ``i`` computes when its name does not say (none, or cut to a prefix).

        A graph output belongs to its Keras output layer or the nearest layer
        upstream that can compute it. An int8 ``QUANTIZE``/``DEQUANTIZE``
        continues the layer it reads (one reading a graph input is left to its
        reader), and so does any op reading a quantized layer that has no kernel
        op yet (its input quantizer's ops, then its conv or dense op). Any other
        op belongs to the nearest layer downstream of every layer (or graph
        input) it reads, in hops then Keras order, that has no op yet and can
        compute it: of the op's output shape unless the op bitpacks (a kernel
        op: as many elements), a batch norm only as ``MUL``/``ADD``/``SUB``, an
        ``LceQuantize`` only a quantized layer. A batch norm's ``ADD`` after
        its ``MUL`` continues it; failing all that, an op of a reading layer's
        shape continues that layer. An ``LceDequantize`` (signs back to +-1,
        the input quantizer of the layer reading it) is left to its reader.
        Unowned ops are looked through to the layers they read. A name cut
        inside a layer name admits only the layers it starts and their
        ancestors (a conv takes the name of the batch norm fused into it).
        """
        op, layers, graph = self.graph.operators[i], self.keras.layers, self.graph
        cut = [
            n
            for t in op.outputs
            for n in layers_cut_in_name(graph.tensors[t].name, self.keras.model.name, layers)
        ]
        # The name is its last fused layer's: the op computes that layer or one upstream.
        possible = {a for n in cut for a in (n, *self.keras.ancestors(n, hops=3))} or set(layers)
        by_tensor = {t: name for name, t in self.outputs.items()}
        for t in op.outputs:
            if t in by_tensor:
                start = by_tensor[t]
                for candidate in [start, *self.keras.ancestors(start, hops=4)]:
                    if candidate in possible and can_own(layers[candidate], op.opcode):
                        return candidate
        chained = self._batch_norm_continued(i)
        if chained in possible:
            return chained
        sources = self._sources(i)
        for s in sources:
            if s not in possible or s in self.inputs:
                continue
            if op.opcode in _TYPE_CASTS:
                return s
            ops = self.layer_ops.get(s, [])
            opened = not any(self.graph.operators[j].opcode in KERNEL_OPS for j in ops)
            if is_quantized(layers[s]) and opened and can_own(layers[s], op.opcode):
                return s
        if op.opcode in (*_TYPE_CASTS, DEQUANTIZE):
            return None
        output = op.outputs[0]
        bitpacks = graph.tensors[output].dtype == "int32" and op.opcode in _BITPACKING_OPS
        fits = self._fits if op.opcode in KERNEL_OPS else self._shape_fits

        def eligible(name: str) -> bool:
            layer, kind = layers[name], class_name(layers[name])
            return (
                name in possible
                and kind != "InputLayer"
                and can_own(layer, op.opcode)
                and (bitpacks or fits(name, output))
                and (kind != "BatchNormalization" or op.opcode in AFFINE_OPS)
                and (op.opcode != QUANTIZE or is_quantized(layer) or _is_quantizer(layer))
            )

        reach = [self.keras.downstream(s, hops=4) for s in sources]
        for name in reach[0] if reach else []:
            fresh = name not in sources and not self.layer_ops.get(name)
            if fresh and eligible(name) and all(name in r for r in reach[1:]):
                return name
        return next((s for s in sources if op.opcode not in KERNEL_OPS and eligible(s)), None)

    def _batch_norm_continued(self, i: int) -> str | None:
        """The batch norm whose ``MUL`` affine op ``i`` (its ``ADD``) continues, if it does.

        Op ``i`` adds or multiplies a constant, has no fused activation (one that
        has took the activation layer's name) and alone reads the output of an
        affine op of a ``BatchNormalization``.
        """
        op, graph = self.graph.operators[i], self.graph
        variable = [t for t in op.inputs if t >= 0 and not self.index.is_constant(t)]
        if (
            op.opcode not in AFFINE_OPS
            or op.options.get("fused_activation_function", 0)
            or len(variable) != 1
            or len(variable) == len([t for t in op.inputs if t >= 0])
        ):
            return None
        (t,) = variable
        producer = self.index.producer(t)
        if producer is None or graph.operators[producer].opcode not in AFFINE_OPS:
            return None
        bn = self.owner.get(producer)
        if (
            bn is None
            or class_name(self.keras.layers[bn]) != "BatchNormalization"
            or self.index.consumers(t) != [i]
            or self.index.is_graph_output(t)
        ):
            return None
        return bn

    def _sources(self, i: int) -> list[str]:
        """The layers (or graph inputs' layers) whose values op ``i`` reads, through unowned ops."""
        graph_inputs = {t: name for name, t in self.inputs.items()}
        sources: list[str] = []
        stack, seen = [i], {i}
        while stack:
            for t in self.graph.operators[stack.pop()].inputs:
                if t < 0 or self.index.is_constant(t):
                    continue
                producer = self.index.producer(t)
                source = graph_inputs.get(t) if producer is None else self.owner.get(producer)
                if source is None and producer is not None and producer not in seen:
                    seen.add(producer)
                    stack.append(producer)
                elif source is not None and source not in sources:
                    sources.append(source)
        return sources

    def _own_quantizers_by_reader(self) -> None:
        """An ``LceQuantize`` belongs to the layer reading its signs.

        It is named after the quantized layer whose input quantizer it is, but LCE
        moves the sign in front of a max-pool (which commutes with it): then the
        binary max-pool's layer computes with it. A sign shared by several
        quantized layers stays with the one it is named after; the others take
        part in it (it is their input quantizer too).
        """
        for i, op in enumerate(self.graph.operators):
            if op.opcode != QUANTIZE:
                continue
            readers = {self.owner.get(r) for r in self.index.consumers(op.outputs[0])}
            if len(readers) == 1 and None not in readers and readers != {self.owner.get(i)}:
                (reader,) = readers
                self._add(reader, i, False)  # type: ignore[arg-type]
                self.owner[i] = reader  # type: ignore[assignment]
            elif len(readers) > 1:
                for reader in sorted(r for r in readers if r is not None):
                    if is_quantized(self.keras.layers[reader]):
                        self._add(reader, i, False)

    def _continue_affine_chains(self) -> None:
        """A batch norm's MUL -> ADD, where the ADD took a following activation's name."""
        graph = self.graph
        for i, op in enumerate(graph.operators):
            if op.opcode not in AFFINE_OPS or not any(self.index.is_constant(t) for t in op.inputs):
                continue
            for t in op.inputs:
                source = self.index.producer(t) if t >= 0 else None
                if source is None or graph.operators[source].opcode not in AFFINE_OPS:
                    continue
                bn = self.owner.get(source)
                if (
                    bn is not None
                    and class_name(self.keras.layers[bn]) == "BatchNormalization"
                    and self.index.consumers(t) == [i]
                    and not self.index.is_graph_output(t)
                    and i not in self.layer_ops.get(bn, [])
                ):
                    self._add(bn, i, False)

    def _map_leftover_layers(self) -> None:
        """Give layers without ops the compatible op of a neighbour, saying so."""
        graph, kg = self.graph, self.keras
        for name, layer in kg.layers.items():
            if self.layer_ops.get(name):
                continue
            cls = class_name(layer)
            if cls == "InputLayer":
                self.notes[name] = "graph input"
                continue
            if cls in _IDENTITY_AT_INFERENCE:
                self.notes[name] = "no op: identity at inference"
                continue
            merge_types: tuple[str, ...]
            if cls == "BatchNormalization":
                merge_types = KERNEL_OPS + AFFINE_OPS
            elif cls in ("Activation", "ReLU"):
                merge_types = tuple(op.opcode for op in graph.operators)  # fused activation
            else:
                merge_types = ()
            for neighbour in kg.inbound.get(name, []) + kg.outbound.get(name, []):
                upstream = neighbour in kg.inbound.get(name, [])
                ops = [
                    i
                    for i in self.layer_ops.get(neighbour, [])
                    if graph.operators[i].opcode in merge_types
                ]
                if cls == "BatchNormalization" and upstream:
                    ops = [i for i in ops if graph.operators[i].opcode in KERNEL_OPS]
                if ops:
                    op = ops[-1] if upstream else ops[0]
                    self._add(name, op, False)
                    self.notes[name] = f"no op named after it; merged into op {op} of {neighbour}"
                    break
            else:
                self.notes[name] = "no op found (folded away by the converter, or its name was cut)"

    # -- tensors -> meanings

    def _assign_meanings(self) -> None:
        graph = self.graph
        for name, t in self.inputs.items():
            self._set(t, name, VALUE)
        thresholds = {f.threshold: f for f in self.folds if f.threshold is not None}
        folded_signs = {f.signs: f for f in self.folds}
        output_layer = {t: name for name, t in self.outputs.items()}
        for i, op in enumerate(graph.operators):
            for t in op.outputs:
                tensor = graph.tensors[t]
                if t in thresholds:
                    layer = self._fold_layer(thresholds[t], i)
                    if layer:
                        self._set(t, layer, THRESHOLD, thresholds[t].flipped_channels)
                elif tensor.dtype == "int32" and op.opcode in _BITPACKING_OPS:
                    self._assign_signs(i, t, folded_signs.get(t))
                elif t in output_layer and self._shape_fits(output_layer[t], t):
                    self._set(t, output_layer[t], VALUE)
                else:
                    layer = self._value_layer(i, t)
                    if layer is not None:
                        self._set(t, layer, VALUE)

    def _graph_inputs(self) -> list[int]:
        names = self.keras.input_layers
        for sig in self.model.signature_defs:
            if sig.subgraph_index == 0 and set(sig.inputs) == set(names):
                return [sig.inputs[n] for n in names]
        return list(self.graph.inputs) if len(names) == len(self.graph.inputs) == 1 else []

    def _set(self, t: int, layer: str, meaning: str, flipped: tuple[int, ...] = ()) -> None:
        self._tensors[t] = TensorRef(t, self.graph.tensors[t].name, layer, meaning, flipped)

    def _fits(self, layer: str, t: int) -> bool:
        """Tensor ``t`` has ``layer``'s output shape, or as many elements (a reshaped value)."""
        if self._shape_fits(layer, t):
            return True
        expected = self.keras.output_shape(layer)
        if expected is None or None in expected:
            return False
        return int(np.prod(expected)) == int(np.prod(self.graph.tensors[t].shape[1:]))

    def _shape_fits(self, layer: str, t: int) -> bool:
        expected = self.keras.output_shape(layer)
        actual = self.graph.tensors[t].shape[1:]
        if expected is None or len(expected) != len(actual):
            return False
        return all(e is None or e == a for e, a in zip(expected, actual, strict=True))

    def _fold_layer(self, fold: FoldRecord, op: int) -> str | None:
        named = layers_in_name(fold.stood_for, self.keras.model.name, self.keras.layers)
        candidates = [n for n in named if self._shape_fits(n, fold.threshold or fold.signs)]
        candidates = candidates or [n for n in (self.owner.get(op),) if n]
        return max(candidates, key=self.keras.order.__getitem__) if candidates else None

    def _assign_signs(self, op: int, t: int, fold: FoldRecord | None) -> None:
        operator = self.graph.operators[op]
        if operator.opcode == QUANTIZE:
            source = self._tensors.get(operator.inputs[0])
            if source is not None and self._packs(source.layer, t):
                flipped = fold.flipped_channels if fold else source.flipped_channels
                self._set(t, source.layer, SIGNS, flipped)
                return
        # Named after (or else read by) the quantized layer(s) it feeds: their input's signs.
        readers = [self.owner[r] for r in self.index.consumers(t) if r in self.owner]
        for q in self._named(t) or list(dict.fromkeys(readers)):
            parents = self.keras.inbound.get(q, [])
            layer = self.keras.layers[q]
            if (is_quantized(layer) or _is_quantizer(layer)) and len(parents) == 1:
                layer = parents[0]
                if fold is not None and operator.opcode == QUANTIZE:
                    layer = self._fold_layer(fold, op) or layer
                layer = self._before_max_pools(layer, t)
                if self._packs(layer, t):
                    self._set(t, layer, SIGNS, fold.flipped_channels if fold else ())
                return

    def _before_max_pools(self, layer: str, t: int) -> str:
        """``layer``, or the layer before the max-pools ending at it whose signs ``t`` holds.

        LCE moves a sign in front of a max-pool (they commute): a bconv's
        bitpacked output named after the quantized layer after the pool holds
        the signs of the pool's input.
        """
        kg = self.keras
        while (
            not self._packs(layer, t)
            and "MaxPool" in class_name(kg.layers[layer])
            and len(kg.inbound.get(layer, [])) == 1
        ):
            layer = kg.inbound[layer][0]
        return layer

    def _packs(self, layer: str, t: int) -> bool:
        """Bitpacked tensor ``t`` holds as many words as ``layer``'s output's signs need."""
        shape = self.keras.output_shape(layer)
        if not shape or None in shape:
            return False
        packed = self.graph.tensors[t].shape[1:]
        pixels = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        words = -(-int(shape[-1]) // 32)
        return bool(packed) and int(np.prod(packed[:-1])) == pixels and packed[-1] == words

    def _value_layer(self, op: int, t: int) -> str | None:
        layers, graph = self.keras.layers, self.graph
        opcode = graph.operators[op].opcode
        computed = [n for n, ops in self.layer_ops.items() if op in ops]
        named = [n for n in self._named(t) if can_own(layers[n], opcode)]
        source = self._tensors.get(graph.operators[op].inputs[0])
        if (
            opcode in _SAME_VALUE_OPS
            and source is not None
            and source.meaning == VALUE
            and self._shape_fits(source.layer, t)
        ):
            named.append(source.layer)  # a reshaped or (de)quantized copy of its input's value
        readers = self.index.consumers(t)

        def read_outside(n: str) -> bool:
            ops = self.layer_ops.get(n, [])
            outputs = self.index.is_graph_output(t) or not readers
            return outputs or any(r not in ops for r in readers)

        layers_of_op = list(dict.fromkeys(computed + named))
        if opcode in _BIASED_KERNEL_OPS and not self._has_bias(op):
            # The converter moved the bias (a dense layer's, a batch norm's shift) into a
            # later op: this value is none of those layers' outputs.
            layers_of_op = [n for n in layers_of_op if not _adds_a_bias(layers[n])]
        candidates = [n for n in layers_of_op if self._shape_fits(n, t)]
        if not candidates:
            # Another layout of as many elements (a dense layer's (C,) as a 1x1 conv's
            # (1, 1, C)): only the most downstream layer the op computes, read outside it.
            reshaped = [n for n in layers_of_op if self._fits(n, t)]
            last = max(reshaped, key=self.keras.order.__getitem__, default=None)
            return last if last is not None and read_outside(last) else None
        outside = [n for n in candidates if read_outside(n)]
        return max(outside, key=self.keras.order.__getitem__) if outside else None

    def _has_bias(self, op: int) -> bool:
        inputs = self.graph.operators[op].inputs
        return len(inputs) > 2 and inputs[2] >= 0

    # -- per layer

    def _inputs_of(self, ops: list[int]) -> list[TensorRef]:
        produced = {t for i in ops for t in self.graph.operators[i].outputs}
        refs: list[TensorRef] = []
        for i in ops:
            for t in self.graph.operators[i].inputs:
                if t < 0 or t in produced or self.index.is_constant(t):
                    continue
                ref = self._tensors.get(t) or TensorRef(t, self.graph.tensors[t].name, "", UNKNOWN)
                if ref not in refs:
                    refs.append(ref)
        return refs

    def _layer_ops(self, name: str) -> LayerOps:
        ops = self.layer_ops.get(name, [])
        own = [i for i in ops if self.owner.get(i) == name]
        refs = [r for r in self._tensors.values() if r.layer == name]
        rank = {VALUE: 0, THRESHOLD: 1, SIGNS: 2}
        # the best meaning; among equals the last op's tensor (e.g. a RESHAPE of the value)
        output = min(
            refs,
            key=lambda r: (rank[r.meaning], -(self.index.producer(r.tensor) or -1)),
            default=None,
        )
        signs = next((r for r in refs if r.meaning == SIGNS), None)
        fused_into = None
        if output is None and ops:
            for i in ops:
                later = [
                    self._tensors[t].layer
                    for t in self.graph.operators[i].outputs
                    if t in self._tensors
                    and self.keras.order[self._tensors[t].layer] > self.keras.order[name]
                ]
                if later:
                    fused_into = later[0]
                    break
            else:  # no tensor of a later layer: the nearest later layer sharing an op
                order = self.keras.order
                sharing = [
                    other
                    for other, other_ops in self.layer_ops.items()
                    if order[other] > order[name] and set(ops) & set(other_ops)
                ]
                fused_into = min(sharing, key=order.__getitem__, default=None)
        mapped_by = "none" if not ops else ("name" if self.named.get(name) else "structure")
        return LayerOps(
            name=name,
            class_name=class_name(self.keras.layers[name]),
            ops=ops,
            own_ops=own,
            mapped_by=mapped_by,
            inputs=self._inputs_of(own),
            output=output,
            signs=signs,
            fused_into=fused_into,
            note=self.notes.get(name, ""),
        )


def map_layers(keras_model: Any, flatbuffer: bytes | ir.Model) -> LayerMap:
    """Map ``keras_model``'s top-level layers onto the flatbuffer converted from it.

    Arguments:
        keras_model: the tf-keras model that was converted (a nested model is one layer).
        flatbuffer: the converted model (bytes or :class:`bnnconvert.ir.Model`), as
            LCE wrote it or after bnnconvert's passes; subgraph 0 is mapped.

    Returns:
        A :class:`LayerMap`.

    Raises:
        FlatbufferProblem: ``flatbuffer`` is bytes that are not a valid TFLite model.
    """
    model = ir.read(flatbuffer) if isinstance(flatbuffer, (bytes, bytearray)) else flatbuffer
    return LayerMap(keras_model, model)


# --- values ---------------------------------------------------------------------------


def _flip(signs: np.ndarray, flipped: tuple[int, ...]) -> np.ndarray:
    if flipped:
        signs = signs.copy()
        signs[..., list(flipped)] *= -1
    return signs


def keras_signs(keras_value: np.ndarray) -> np.ndarray:
    """The +-1 signs (larq's ``sign(0) = +1``) of a Keras layer's output, float32."""
    return np.where(np.asarray(keras_value) < 0, -1.0, 1.0).astype(np.float32)


def flatbuffer_signs(ref: TensorRef, value: np.ndarray, channels: int) -> np.ndarray:
    """The +-1 signs of ``ref.layer``'s output that tensor value ``value`` holds.

    Arguments:
        ref: a ``THRESHOLD``, ``SIGNS`` or ``VALUE`` reference.
        value: the tensor's value (int32 words for ``SIGNS``).
        channels: the layer's output channels (to unpack ``SIGNS``).

    Returns:
        float32 +-1, shape ``value.shape[:-1] + (channels,)``, flips undone.
    """
    if ref.meaning == SIGNS:
        signs = ir.unpack_bits(np.asarray(value), channels).astype(np.float32)
    else:
        signs = np.where(np.asarray(value) < 0, -1.0, 1.0).astype(np.float32)
    return _flip(signs, ref.flipped_channels)


def as_flatbuffer_input(ref: TensorRef, keras_value: np.ndarray) -> np.ndarray:
    """What tensor ``ref.tensor`` holds when ``ref.layer``'s Keras output is ``keras_value``.

    ``VALUE``: the value (float32; quantize int8 tensors with their parameters
    yourself); ``THRESHOLD``: float32 ``±max(|value|, 1)`` carrying the value's
    sign (``sign(0) = +1``), negated in the flipped channels; ``SIGNS``: those
    signs bitpacked into int32 words.
    """
    value = np.asarray(keras_value, dtype=np.float32)
    if ref.meaning == VALUE:
        return value
    signs = _flip(keras_signs(value), ref.flipped_channels)
    if ref.meaning == SIGNS:
        return ir.pack_bits(signs)
    return (signs * np.maximum(np.abs(value), np.float32(1.0))).astype(np.float32)
