"""Build a Larq/Keras model (NHWC) from a folded, fused ONNX graph (NCHW).

Every node becomes Keras layers named after it (:func:`.graph.layer_name`), so
LCE's converter names the flatbuffer's tensors after ONNX nodes and the audit
and ``validate`` report them. A ``Sign``/``BinarySign`` is not a layer of its
own: it is kept pending (:class:`Signed`) until a reader needs it. A ``Conv``,
``Gemm`` or ``MatMul`` reading it becomes a Larq ``QuantConv2D`` with a
``ste_sign`` input quantizer (the sign is applied there, as LCE expects); when
the weights are ``±α`` per output channel, the kernel is ``sign(W)`` with a
``ste_sign`` kernel quantizer followed by a per-channel ``ChannelAffine(α)``,
which LCE fuses into the binary conv's post-activation multiplier. Other
readers get a materialised Larq ``SteSign`` layer. ``MaxPool`` commutes with
the sign (both are monotone), so a pending sign passes through it.

Zero padding of a binarized tensor is PyTorch's padding with 0, which is
LCE's ``pad_values=0``: Larq's ``padding="same"`` (which is ``pad_values=0``)
when PyTorch's padding equals TensorFlow's SAME for the shape at hand.
Otherwise (PyTorch pads both sides; e.g. stride 2 on an even size) a binary
tensor cannot hold the 0s, but 0 is the mean of +1 and -1: the layer becomes
the mean of two VALID binary convs, of the input padded with +1 and with -1
(exact; twice that layer's binary work; a constant correction ``ADD`` would be
cheaper, but LCE 0.16 fuses a position-dependent ``ADD`` into the bconv's 1-D
bias and produces a model its interpreter refuses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bnnconvert import _tf
from bnnconvert.audit import Diagnostic
from bnnconvert.audit_padding import trimmed_padding
from bnnconvert.errors import first_line
from bnnconvert.onnx_import.errors import OnnxProblem
from bnnconvert.onnx_import.graph import Graph, Node, layer_name

NCHW_TO_NHWC_AXIS = {0: 0, 1: 3, 2: 1, 3: 2}
_FLOAT_LOWEST = float(np.finfo(np.float32).min)
_PASS_THROUGH = ("Identity", "Dropout")
SUPPORTED_OPS = (
    "Abs",
    "Add",
    "AveragePool",
    "BatchNormalization",
    "BinarySign",
    "Clip",
    "Concat",
    "Conv",
    "Div",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "GlobalMaxPool",
    "HardSigmoid",
    "Identity",
    "LeakyRelu",
    "MatMul",
    "MaxPool",
    "Mul",
    "PRelu",
    "Pad",
    "ReduceMean",
    "Relu",
    "Reshape",
    "Round",
    "Sigmoid",
    "Sign",
    "Softmax",
    "Squeeze",
    "Sub",
    "Tanh",
)


@dataclass
class Signed:
    """A pending ``sign(source)``; ``pads`` (top, left, bottom, right) of zeros after the sign."""

    source: Any
    node: Node
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    materialized: Any = None


@dataclass
class Built:
    """The Keras model and what the audit should add about the ONNX graph."""

    model: Any
    findings: list[Diagnostic] = field(default_factory=list)


def _binary_scale(weights: np.ndarray) -> np.ndarray | None:
    """α per output channel (axis 0) if every weight of a channel is ±α with α > 0."""
    flat = np.abs(weights.reshape(weights.shape[0], -1))
    alpha = flat[:, 0]
    if np.all(alpha > 0) and np.all(flat == alpha[:, None]):
        return alpha.astype(np.float32)
    return None


def _same_padding(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow SAME: (begin, end) padding and the output size."""
    out = -(-size // stride)
    extent = (k - 1) * dilation + 1
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, out


def padding_mode(
    shape_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> str:
    """``"valid"``, ``"same"`` (TensorFlow computes the same windows) or ``"explicit"``.

    ``pads`` is (top, left, bottom, right), as ONNX gives them for 2-D.
    """
    if not any(pads):
        return "valid"
    for axis in (0, 1):
        begin, out = _same_padding(shape_hw[axis], kernel[axis], strides[axis], dilations[axis])
        extent = (kernel[axis] - 1) * dilations[axis] + 1
        ours = (shape_hw[axis] + pads[axis] + pads[axis + 2] - extent) // strides[axis] + 1
        if begin != pads[axis] or out != ours:
            return "explicit"
    return "same"


def trim_unused_end(
    shape_hw: tuple[int, int],
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
    pads: tuple[int, int, int, int],
) -> tuple[int, int, int, int]:
    """``pads`` without end rows/columns no window reaches (PyTorch's stride-2 padding has one).

    Needed for correctness, not only size: LCE 0.16 merges ``PAD(1, 1)`` +
    VALID conv into a wrongly placed SAME conv on even sizes (see
    :mod:`bnnconvert.audit_padding`, which finds that pattern in Keras models).
    """
    ends = [
        trimmed_padding(
            shape_hw[axis],
            pads[axis],
            pads[axis + 2],
            strides[axis],
            (kernel[axis] - 1) * dilations[axis] + 1,
        )[1]
        for axis in (0, 1)
    ]
    return (pads[0], pads[1], ends[0], ends[1])


def _nhwc_constant(value: np.ndarray, rank: int) -> np.ndarray:
    """An NCHW-broadcastable constant as the NHWC-broadcastable one (batch axis dropped)."""
    value = np.asarray(value, np.float32)
    if rank != 4 or value.ndim <= 1:
        return value if value.ndim <= 1 else value.reshape(value.shape[-value.ndim + 1 :])
    while value.ndim < 4:
        value = value[None]
    value = value.transpose(0, 2, 3, 1)[0]
    return value.reshape(value.shape[-1]) if value.shape[:2] == (1, 1) else value


class KerasBuilder:
    """Walk the graph in order and create the Keras layers (see the module docstring)."""

    def __init__(
        self, graph: Graph, input_nchw: tuple[int, int, int, int], source: str, name: str
    ) -> None:
        self.graph = graph
        self.source = source
        self.name = layer_name(name)
        self.keras = _tf.keras()
        self.lq = _tf.larq()
        from bnnconvert.onnx_import import layers

        self.custom = layers
        _, c, h, w = input_nchw
        self.input = self.keras.Input((h, w, c), name=layer_name(graph.input))
        self.values: dict[str, Any] = {graph.input: self.input}
        self.findings: list[Diagnostic] = []

    # --- helpers ---------------------------------------------------------------------

    def fail(self, node: Node, what: str, fix: str) -> OnnxProblem:
        return OnnxProblem(f"{self.source}: node {node.name!r} ({node.op}): {what}; {fix}")

    def note(
        self, node: Node, code: str, message: str, fix: str = "", severity: str = "info"
    ) -> None:
        self.findings.append(
            Diagnostic(
                code, severity, node.layer, f"ONNX node {node.name} ({node.op}): {message}", fix
            )
        )

    def const(self, node: Node, index: int, what: str) -> np.ndarray:
        if index >= len(node.inputs) or not node.inputs[index]:
            raise self.fail(node, f"has no {what}", "export it with one")
        value = self.graph.constant(node.inputs[index])
        if value is None:
            raise self.fail(
                node,
                f"its {what} is computed at run time, not a constant",
                "export with constant weights (the model in eval mode)",
            )
        return value

    def optional_const(self, node: Node, index: int) -> np.ndarray | None:
        if index >= len(node.inputs) or not node.inputs[index]:
            return None
        return self.const(node, index, f"input {index}")

    def float_tensor(self, name: str) -> Any:
        """The Keras tensor for ``name``, materialising a pending sign."""
        if name not in self.values:
            raise OnnxProblem(
                f"{self.source}: tensor {name!r} is a constant where image data is expected; "
                "only weights may be constants"
            )
        value = self.values[name]
        if isinstance(value, Signed):
            if value.materialized is None:
                signs = self.lq.quantizers.SteSign(name=value.node.layer)(value.source)
                if any(value.pads):
                    signs = self.keras.layers.ZeroPadding2D(
                        ((value.pads[0], value.pads[2]), (value.pads[1], value.pads[3])),
                        name=f"{value.node.layer}.pad",
                    )(signs)
                value.materialized = signs
            return value.materialized
        return value

    def operand(self, name: str) -> Any:
        value = self.graph.constant(name)
        return value if value is not None else self.values[name]

    @staticmethod
    def rank(tensor: Any) -> int:
        return len(tensor.shape)

    # --- the walk --------------------------------------------------------------------

    def build(self) -> Built:
        for node in self.graph.nodes:
            handler = getattr(self, f"op_{node.op}", None)
            if handler is None:
                raise self.fail(
                    node,
                    "this op is not supported by bnnconvert's ONNX import",
                    f"replace it with one of: {', '.join(SUPPORTED_OPS)}",
                )
            try:
                self.values[node.outputs[0]] = handler(node)
            except (ValueError, TypeError, IndexError, KeyError) as e:
                # Keras refusing a shape or weight the checker let through
                raise self.fail(
                    node, f"could not be converted ({first_line(e)})",
                    "check its shapes and attributes",
                ) from e  # fmt: skip
        output = self.float_tensor(self.graph.output)
        model = self.keras.Model(self.input, output, name=self.name)
        return Built(model, self.findings)

    # --- binarization ----------------------------------------------------------------

    def op_Sign(self, node: Node) -> Any:
        value = self.values[node.inputs[0]]
        if isinstance(value, Signed):
            return value
        x = self.float_tensor(node.inputs[0])
        self.note(
            node,
            "onnx-sign-at-zero",
            "Sign of activations gives 0 at exactly 0 (torch.sign); LCE's sign gives +1 there, "
            "so exact zeros are ties where the flatbuffer may differ",
            "nothing for a trained model (validate names such flips as ties); "
            "torch.where(x >= 0, 1.0, -1.0) matches LCE exactly",
        )
        return Signed(x, node)

    def op_BinarySign(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        threshold = _nhwc_constant(node.attrs["threshold"], self.rank(x))
        if np.any(threshold != 0):
            x = self.custom.ChannelAffine(bias=-threshold, name=f"{node.layer}.threshold")(x)
        if node.attrs["at_zero"] != "+1":
            self.note(
                node,
                "onnx-sign-at-zero",
                f"this Where gives {node.attrs['at_zero']} at the threshold; LCE's sign gives +1 "
                "there, so inputs exactly at the threshold are ties",
                "use >= (torch.where(x >= t, 1.0, -1.0)) to match LCE exactly",
            )
        return Signed(x, node)

    def op_Pad(self, node: Node) -> Any:
        mode = node.attrs.get("mode", b"constant")
        pads = self.const(node, 1, "pads") if len(node.inputs) > 1 else node.attrs.get("pads")
        value = self.optional_const(node, 2)
        fill = 0.0 if value is None else float(np.asarray(value).ravel()[0])
        pads = [int(p) for p in np.asarray(pads).ravel()]
        if (
            mode not in (b"constant", "constant")
            or len(pads) != 8
            or any(pads[i] for i in (0, 1, 4, 5))
            or min(pads) < 0
        ):
            raise self.fail(
                node,
                f"mode {mode!r} with pads {pads} is not a constant spatial padding of an image",
                "pad H and W with a constant (nn.ZeroPad2d or the conv's padding)",
            )
        hw = (pads[2], pads[3], pads[6], pads[7])
        value_in = self.values[node.inputs[0]]
        if isinstance(value_in, Signed) and fill == 0.0:
            merged = tuple(a + b for a, b in zip(value_in.pads, hw, strict=True))
            return Signed(value_in.source, value_in.node, merged)  # type: ignore[arg-type]
        return self.pad(self.float_tensor(node.inputs[0]), hw, fill, node.layer)

    def pad(self, x: Any, pads: tuple[int, int, int, int], fill: float, name: str) -> Any:
        if fill == 0.0:
            return self.keras.layers.ZeroPadding2D(
                ((pads[0], pads[2]), (pads[1], pads[3])), name=name
            )(x)
        return self.custom.Pad2D(pads, fill, name=name)(x)

    # --- convolutions and dense --------------------------------------------------------

    def op_Conv(self, node: Node) -> Any:
        weights = self.const(node, 1, "weights").astype(np.float32)
        bias = self.optional_const(node, 2)
        if weights.ndim != 4:
            raise self.fail(node, f"is a {weights.ndim - 2}-D convolution", "use 2-D convolutions")
        group = int(node.attrs.get("group", 1))
        k = tuple(int(v) for v in node.attrs.get("kernel_shape", weights.shape[2:]))
        strides = tuple(int(v) for v in node.attrs.get("strides", (1, 1)))
        dilations = tuple(int(v) for v in node.attrs.get("dilations", (1, 1)))
        value = self.values[node.inputs[0]]
        signed = isinstance(value, Signed)
        x = value.source if signed else self.float_tensor(node.inputs[0])
        pads = self._conv_pads(node, x, k, strides, dilations)
        if signed:
            pads = tuple(a + b for a, b in zip(value.pads, pads, strict=True))
        mode = padding_mode(tuple(x.shape[1:3]), k, strides, dilations, pads)  # type: ignore[arg-type]
        if mode == "explicit":
            pads = trim_unused_end(tuple(x.shape[1:3]), k, strides, dilations, pads)  # type: ignore[arg-type]
        alpha = _binary_scale(weights)
        kernel = np.sign(weights) if alpha is not None else weights
        common = {
            "kernel_size": k,
            "strides": strides,
            "dilation_rate": dilations,
            "use_bias": False,
            "name": node.layer,
        }
        if signed:
            self._note_float_weights(node, alpha)
            if mode == "explicit":
                return self._binary_conv_zero_padded(
                    node, x, kernel, alpha, bias, pads, group, common
                )
            y = self._binary_conv(x, kernel, alpha, group, mode, common)
            return self._scale_and_bias(node, y, alpha, bias)
        if alpha is not None:
            self.note(
                node,
                "onnx-float-input",
                "its weights are ±α per output channel but its input is not binarized, so it "
                "stays a float CONV_2D",
                "put a sign (torch.sign or the straight-through estimator) on its input",
                severity="error",
            )
        if mode == "explicit":
            x = self.pad(x, pads, 0.0, f"{node.layer}.pad")
        y = self._float_conv(node, x, weights, group, mode, common)
        return self._scale_and_bias(node, y, None, bias)

    def _binary_conv(
        self,
        x: Any,
        kernel: np.ndarray,
        alpha: np.ndarray | None,
        group: int,
        mode: str,
        common: dict[str, Any],
    ) -> Any:
        """A Larq ``QuantConv2D`` of sign(x); a ``ste_sign`` kernel when ``alpha`` says ±α."""
        layer = self.lq.layers.QuantConv2D(
            kernel.shape[0],
            padding="same" if mode == "same" else "valid",
            pad_values=0.0,
            groups=group,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign" if alpha is not None else None,
            **common,
        )
        y = layer(x)
        layer.set_weights([kernel.transpose(2, 3, 1, 0)])
        return y

    def _binary_conv_zero_padded(
        self,
        node: Node,
        x: Any,
        kernel: np.ndarray,
        alpha: np.ndarray | None,
        bias: np.ndarray | None,
        pads: tuple[int, int, int, int],
        group: int,
        common: dict[str, Any],
    ) -> Any:
        """sign(x) zero-padded by ``pads`` that SAME cannot express, then a VALID binary conv.

        A binary input cannot hold 0, but 0 is the mean of +1 and -1: the result
        is the mean of the conv of sign(x) padded with +1 and with -1 (exact).
        Each half carries ``α / 2`` (fused into its bconv's multiplier).
        """
        self.note(
            node,
            "onnx-explicit-padding",
            f"its zero padding {pads} (top, left, bottom, right) is not TensorFlow's SAME for "
            "this shape; computed exactly as the mean of two binary convs (padded with +1 and "
            "with -1), which doubles this layer's binary work",
            "pad where TensorFlow's SAME does (e.g. odd input sizes for stride 2) to save it",
        )
        half = (alpha if alpha is not None else np.ones(kernel.shape[0], np.float32)) / 2
        halves = []
        for fill, suffix in ((0.0, ""), (-1.0, ".minus_pad")):
            padded = self.pad(x, pads, fill, f"{node.layer}{suffix}.pad")
            y = self._binary_conv(
                padded, kernel, alpha, group, "valid", {**common, "name": node.layer + suffix}
            )
            halves.append(
                self.custom.ChannelAffine(half, None, name=f"{node.layer}{suffix}.scale")(y)
            )
        y = self.keras.layers.Add(name=f"{node.layer}.zero_pad")(halves)
        return self._scale_and_bias(node, y, None, bias)

    def _conv_pads(
        self,
        node: Node,
        x: Any,
        k: tuple[int, ...],
        strides: tuple[int, ...],
        dilations: tuple[int, ...],
    ) -> tuple[int, int, int, int]:
        auto = node.attrs.get("auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto == "VALID":
            return (0, 0, 0, 0)
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            pads = []
            for axis in (0, 1):
                extent = (k[axis] - 1) * dilations[axis] + 1
                out = -(-int(x.shape[1 + axis]) // strides[axis])
                pads.append(max((out - 1) * strides[axis] + extent - int(x.shape[1 + axis]), 0))
            small = [p // 2 for p in pads]
            large = [p - p // 2 for p in pads]
            begin, end = (small, large) if auto == "SAME_UPPER" else (large, small)
            return (begin[0], begin[1], end[0], end[1])
        pads = tuple(int(p) for p in node.attrs.get("pads", (0, 0, 0, 0)))
        return pads  # type: ignore[return-value]

    def _float_conv(
        self, node: Node, x: Any, kernel: np.ndarray, group: int, mode: str, common: dict[str, Any]
    ) -> Any:
        padding = "same" if mode == "same" else "valid"
        cin = int(x.shape[-1])
        if group == cin and group > 1:
            multiplier = kernel.shape[0] // cin
            layer = self.keras.layers.DepthwiseConv2D(
                depth_multiplier=multiplier, padding=padding, **common
            )
            y = layer(x)
            layer.set_weights(
                [kernel.reshape(cin, multiplier, *kernel.shape[2:]).transpose(2, 3, 0, 1)]
            )
            return y
        layer = self.keras.layers.Conv2D(kernel.shape[0], padding=padding, groups=group, **common)
        y = layer(x)
        layer.set_weights([kernel.transpose(2, 3, 1, 0)])
        return y

    def _note_float_weights(self, node: Node, alpha: np.ndarray | None) -> None:
        if alpha is None:
            self.note(
                node,
                "onnx-float-weights",
                "its input is binarized but its weights are not ±α per output channel after "
                "constant folding, so LCE keeps a float CONV_2D",
                "binarize the weights in forward (sign(W), optionally times a per-channel "
                "scale such as mean|W|)",
            )

    def _scale_and_bias(
        self, node: Node, y: Any, alpha: np.ndarray | None, bias: np.ndarray | None
    ) -> Any:
        """``y * α + bias`` as one ChannelAffine (none when it is the identity)."""
        scale = None if alpha is None or np.all(alpha == 1.0) else alpha
        add = None if bias is None else np.asarray(bias, np.float32)
        if scale is None and add is None:
            return y
        return self.custom.ChannelAffine(scale, add, name=f"{node.layer}.scale")(y)

    def op_Gemm(self, node: Node) -> Any:
        if int(node.attrs.get("transA", 0)):
            raise self.fail(node, "transposes its input (transA=1)", "export x @ W.T (nn.Linear)")
        weights = self.const(node, 1, "weights").astype(np.float32)
        if int(node.attrs.get("transB", 0)):
            weights = weights.T
        weights = weights * float(node.attrs.get("alpha", 1.0))
        bias = self.optional_const(node, 2)
        if bias is not None:
            bias = np.broadcast_to(bias * float(node.attrs.get("beta", 1.0)), weights.shape[1:])
        return self._dense(node, weights, bias)

    def op_MatMul(self, node: Node) -> Any:
        return self._dense(node, self.const(node, 1, "weights").astype(np.float32), None)

    def _dense(self, node: Node, weights: np.ndarray, bias: np.ndarray | None) -> Any:
        """``x @ weights + bias`` with ``weights`` (K, N); binary ones as a 1x1 binary conv."""
        value = self.values[node.inputs[0]]
        signed = isinstance(value, Signed)
        x = value.source if signed else self.float_tensor(node.inputs[0])
        if self.rank(x) != 2 or weights.ndim != 2:
            raise self.fail(
                node, f"multiplies a rank-{self.rank(x)} tensor", "flatten to (N, features) first"
            )
        units = weights.shape[1]
        alpha = _binary_scale(weights.T)
        if not signed:
            if alpha is not None:
                self.note(
                    node,
                    "onnx-float-input",
                    "its weights are ±α per output but its input is not binarized, so it stays "
                    "a float FULLY_CONNECTED",
                    "put a sign on its input",
                    severity="error",
                )
            layer = self.keras.layers.Dense(units, use_bias=bias is not None, name=node.layer)
            y = layer(x)
            layer.set_weights(
                [weights] + ([np.asarray(bias, np.float32)] if bias is not None else [])
            )
            return y
        self._note_float_weights(node, alpha)
        kernel = np.sign(weights) if alpha is not None else weights
        x = self.keras.layers.Reshape((1, 1, int(x.shape[-1])), name=f"{node.layer}.to_1x1")(x)
        layer = self.lq.layers.QuantConv2D(
            units,
            1,
            use_bias=False,
            input_quantizer="ste_sign",
            kernel_quantizer="ste_sign" if alpha is not None else None,
            name=node.layer,
        )
        y = layer(x)
        layer.set_weights([kernel[None, None]])
        y = self._scale_and_bias(node, y, alpha, bias)
        return self.keras.layers.Reshape((units,), name=f"{node.layer}.flatten")(y)

    # --- normalization and activations -------------------------------------------------

    def op_BatchNormalization(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        params = [
            self.const(node, i, what).astype(np.float32)
            for i, what in ((1, "scale"), (2, "bias"), (3, "mean"), (4, "variance"))
        ]
        layer = self.keras.layers.BatchNormalization(
            axis=-1, epsilon=float(node.attrs.get("epsilon", 1e-5)), name=node.layer
        )
        y = layer(x)
        layer.set_weights(params)
        return y

    def op_Relu(self, node: Node) -> Any:
        return self.keras.layers.ReLU(name=node.layer)(self.float_tensor(node.inputs[0]))

    def op_LeakyRelu(self, node: Node) -> Any:
        return self.keras.layers.LeakyReLU(
            alpha=float(node.attrs.get("alpha", 0.01)), name=node.layer
        )(self.float_tensor(node.inputs[0]))

    def op_PRelu(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        slope = _nhwc_constant(self.const(node, 1, "slope"), self.rank(x))
        channels = int(x.shape[-1])
        slope = np.broadcast_to(
            slope.reshape(-1) if slope.size in (1, channels) else slope, (channels,)
        )
        shared = [1, 2] if self.rank(x) == 4 else None
        layer = self.keras.layers.PReLU(shared_axes=shared, name=node.layer)
        y = layer(x)
        layer.set_weights([np.asarray(slope, np.float32).reshape(layer.get_weights()[0].shape)])
        return y

    def op_Clip(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        low = self.optional_const(node, 1) if len(node.inputs) > 1 else node.attrs.get("min")
        high = self.optional_const(node, 2) if len(node.inputs) > 2 else node.attrs.get("max")
        low = None if low is None else float(np.asarray(low))
        high = None if high is None else float(np.asarray(high))
        if low == 0.0 and high in (None, 6.0):
            return self.keras.layers.ReLU(max_value=high, name=node.layer)(x)
        return self.custom.Clip(low, high, name=node.layer)(x)

    def _activation(self, node: Node, kind: str) -> Any:
        return self.keras.layers.Activation(kind, name=node.layer)(
            self.float_tensor(node.inputs[0])
        )

    def op_Tanh(self, node: Node) -> Any:
        return self._activation(node, "tanh")

    def op_Sigmoid(self, node: Node) -> Any:
        return self._activation(node, "sigmoid")

    def op_HardSigmoid(self, node: Node) -> Any:
        alpha, beta = float(node.attrs.get("alpha", 0.2)), float(node.attrs.get("beta", 0.5))
        x = self.custom.ChannelAffine(
            np.float32(alpha), np.float32(beta), name=f"{node.layer}.affine"
        )(self.float_tensor(node.inputs[0]))
        return self.custom.Clip(0.0, 1.0, name=node.layer)(x)

    def op_Softmax(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        axis = int(node.attrs.get("axis", -1))
        if self.rank(x) != 2 or axis not in (-1, 1):
            raise self.fail(
                node,
                f"is a softmax over axis {axis} of a rank-{self.rank(x)} tensor",
                "apply softmax to (N, classes) logits",
            )
        return self.keras.layers.Softmax(axis=-1, dtype="float32", name=node.layer)(x)

    # --- elementwise --------------------------------------------------------------------

    def _elementwise(self, node: Node, kind: str) -> Any:
        a, b = (self.operand(n) for n in node.inputs[:2])
        if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
            raise self.fail(node, "has only constant inputs", "fold it before export")
        if not isinstance(a, np.ndarray) and not isinstance(b, np.ndarray):
            x, y = self.float_tensor(node.inputs[0]), self.float_tensor(node.inputs[1])
            if kind == "Mul":
                self.note(
                    node,
                    "onnx-float-mul",
                    "multiplies two activations (e.g. XNOR-Net's input scaling K); this stays a "
                    "float MUL",
                    "drop the input scaling or fold it into a per-channel constant",
                )
            if kind == "Div":
                raise self.fail(node, "divides two activations", "divide by a constant instead")
            merge = {"Add": "Add", "Sub": "Subtract", "Mul": "Multiply"}[kind]
            return getattr(self.keras.layers, merge)(name=node.layer)([x, y])
        constant_first = isinstance(a, np.ndarray)
        name = node.inputs[1] if constant_first else node.inputs[0]
        x = self.float_tensor(name)
        c = _nhwc_constant(a if constant_first else b, self.rank(x))
        scale = bias = None
        if kind == "Add":
            bias = c
        elif kind == "Sub":
            scale, bias = (np.float32(-1.0), c) if constant_first else (None, -c)
        elif kind == "Mul":
            scale = c
        elif constant_first:
            raise self.fail(node, "divides a constant by activations", "divide by a constant")
        else:
            scale = (1.0 / c).astype(np.float32)
        return self.custom.ChannelAffine(scale, bias, name=node.layer)(x)

    def op_Add(self, node: Node) -> Any:
        return self._elementwise(node, "Add")

    def op_Sub(self, node: Node) -> Any:
        return self._elementwise(node, "Sub")

    def op_Mul(self, node: Node) -> Any:
        return self._elementwise(node, "Mul")

    def op_Div(self, node: Node) -> Any:
        return self._elementwise(node, "Div")

    def op_Concat(self, node: Node) -> Any:
        tensors = [self.float_tensor(n) for n in node.inputs]
        axis = int(node.attrs["axis"])
        rank = self.rank(tensors[0])
        axis = axis % rank
        keras_axis = NCHW_TO_NHWC_AXIS[axis] if rank == 4 else axis
        if keras_axis == 0:
            raise self.fail(node, "concatenates along the batch axis", "concatenate channels")
        return self.keras.layers.Concatenate(axis=keras_axis, name=node.layer)(tensors)

    # --- pooling and shapes ------------------------------------------------------------

    def _pool_geometry(
        self, node: Node, x: Any
    ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int], str]:
        k = tuple(int(v) for v in node.attrs["kernel_shape"])
        strides = tuple(int(v) for v in node.attrs.get("strides", (1, 1)))
        if int(node.attrs.get("ceil_mode", 0)) or any(
            int(d) != 1 for d in node.attrs.get("dilations", (1, 1))
        ):
            raise self.fail(node, "uses ceil_mode or dilation", "use ceil_mode=False, dilation 1")
        pads = self._conv_pads(node, x, k, strides, (1, 1))
        mode = padding_mode(tuple(x.shape[1:3]), k, strides, (1, 1), pads)  # type: ignore[arg-type]
        if mode == "explicit":
            pads = trim_unused_end(tuple(x.shape[1:3]), k, strides, (1, 1), pads)  # type: ignore[arg-type]
        return k, strides, pads, mode  # type: ignore[return-value]

    def op_MaxPool(self, node: Node) -> Any:
        value = self.values[node.inputs[0]]
        signed = isinstance(value, Signed) and not any(value.pads)
        x = value.source if signed else self.float_tensor(node.inputs[0])
        k, strides, pads, mode = self._pool_geometry(node, x)
        if mode == "explicit":
            x = self.custom.Pad2D(pads, _FLOAT_LOWEST, name=f"{node.layer}.pad")(x)
        y = self.keras.layers.MaxPool2D(
            k, strides, padding="same" if mode == "same" else "valid", name=node.layer
        )(x)
        return Signed(y, value.node) if signed else y

    def op_AveragePool(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        k, strides, pads, mode = self._pool_geometry(node, x)
        include = int(node.attrs.get("count_include_pad", 0))
        if mode == "explicit" or (mode == "same" and include):
            if not include:
                raise self.fail(
                    node,
                    f"pads {pads} excluding the padding from the average, unlike TensorFlow",
                    "use count_include_pad=True, or padding that TensorFlow's SAME matches",
                )
            x = self.pad(x, pads, 0.0, f"{node.layer}.pad")
            mode = "valid"
        return self.keras.layers.AveragePooling2D(k, strides, padding=mode, name=node.layer)(x)

    def op_GlobalAveragePool(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        return self.keras.layers.GlobalAveragePooling2D(keepdims=True, name=node.layer)(x)

    def op_GlobalMaxPool(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        return self.keras.layers.GlobalMaxPooling2D(keepdims=True, name=node.layer)(x)

    def op_ReduceMean(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        axes = node.attrs.get("axes")
        if axes is None and len(node.inputs) > 1:
            axes = self.const(node, 1, "axes")
        axes = sorted(int(a) % 4 for a in np.asarray(axes).ravel()) if axes is not None else []
        keep = bool(int(node.attrs.get("keepdims", 1)))
        if self.rank(x) == 4 and axes == [1] and keep:
            return self.custom.ChannelMean(name=node.layer)(x)
        if self.rank(x) != 4 or axes != [2, 3]:
            raise self.fail(
                node, f"averages over axes {axes}", "average over H and W (2, 3) or channels (1)"
            )
        return self.keras.layers.GlobalAveragePooling2D(keepdims=keep, name=node.layer)(x)

    def _to_flat(self, node: Node, x: Any) -> Any:
        if self.rank(x) == 2:
            return x
        if self.rank(x) == 4 and tuple(x.shape[1:3]) != (1, 1):
            # NCHW order of the features, as PyTorch flattens them
            x = self.keras.layers.Permute((3, 1, 2), name=f"{node.layer}.to_nchw")(x)
        return self.keras.layers.Flatten(name=node.layer)(x)

    def op_Flatten(self, node: Node) -> Any:
        if int(node.attrs.get("axis", 1)) != 1:
            raise self.fail(node, "flattens from an axis other than 1", "use torch.flatten(x, 1)")
        return self._to_flat(node, self.float_tensor(node.inputs[0]))

    def op_Reshape(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        shape = [int(v) for v in self.const(node, 1, "shape")]
        features = int(np.prod(x.shape[1:]))
        if len(shape) == 2 and shape[1] in (-1, features) and shape[0] in (1, -1, 0):
            return self._to_flat(node, x)
        raise self.fail(
            node,
            f"reshapes {tuple(x.shape)} (NHWC) to {shape}",
            "only reshapes to (N, features) are supported; use torch.flatten(x, 1)",
        )

    def op_Squeeze(self, node: Node) -> Any:
        x = self.float_tensor(node.inputs[0])
        if self.rank(x) == 4 and tuple(x.shape[1:3]) == (1, 1):
            return self._to_flat(node, x)
        raise self.fail(node, f"squeezes {tuple(x.shape)}", "use torch.flatten(x, 1)")

    def op_Round(self, node: Node) -> Any:
        """A multi-bit quantizer's rounding: a float ``ROUND``, with a finding saying why."""
        levels = self._quantizer_levels(node)
        count = f" ({levels} levels)" if levels else ""
        self.note(
            node,
            "onnx-multibit-quantizer",
            f"a k-bit quantizer{count} stays float; LCE binarizes only sign (two-level) "
            "activations and weights",
            "to make this layer binary use torch.sign with a straight-through estimator",
        )
        return self.custom.Round(name=node.layer)(self.float_tensor(node.inputs[0]))

    def _quantizer_levels(self, node: Node) -> int | None:
        """``(high - low) * s + 1`` levels for ``Round(Clip(x, low, high) * s)``, else None."""
        mul = self.graph.producer(node.inputs[0])
        if mul is None or mul.op != "Mul" or len(mul.inputs) != 2:
            return None
        scale = [self.graph.constant(name) for name in mul.inputs]
        if (scale[0] is None) == (scale[1] is None):
            return None
        clip = self.graph.producer(mul.inputs[1 if scale[0] is not None else 0])
        step = scale[0] if scale[0] is not None else scale[1]
        if clip is None or clip.op != "Clip" or np.size(step) != 1:
            return None
        bounds = [self.graph.constant(name) for name in clip.inputs[1:3] if name]
        if len(bounds) != 2 or any(b is None or np.size(b) != 1 for b in bounds):
            return None
        low, high = (float(np.ravel(b)[0]) for b in bounds)  # type: ignore[arg-type]
        steps = (high - low) * float(np.ravel(step)[0])
        nearest = round(steps)
        return nearest + 1 if nearest > 0 and abs(steps - nearest) < 1e-3 else None

    def op_Abs(self, node: Node) -> Any:
        return self.custom.Abs(name=node.layer)(self.float_tensor(node.inputs[0]))

    def op_Identity(self, node: Node) -> Any:
        return self.values[node.inputs[0]]

    op_Dropout = op_Identity
