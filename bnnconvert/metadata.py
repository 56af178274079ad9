"""Model metadata: what an app needs to run an exported model, inside the model file.

Two entries go into the flatbuffer's ``metadata`` table (``docs/metadata.md``
describes both field by field):

- ``bnnconvert``: UTF-8 JSON, complete and simple to parse: model name and
  version, input tensor and layout, preprocessing (:mod:`bnnconvert.preprocessing`),
  output tensor, the label list, and the producing bnnconvert version and target.
  bnnconvert's own tools and the Android demo read this one.
- ``TFLITE_METADATA``: the standard ``ModelMetadata`` flatbuffer
  (:mod:`bnnconvert.tflite_metadata`) with the same name, version, normalisation
  and a ``labels.txt`` associated file (zipped onto the end of the model file),
  so TFLite's own tools can describe and use the model too. It cannot say
  "BGR" or how to crop, so it is a courtesy copy; the JSON is authoritative.

Example:
    >>> flatbuffer = embed_metadata(
    ...     flatbuffer, name="digits", target="arm64",
    ...     labels=load_labels(Path("labels.txt")),
    ...     preprocessing=parse_preprocessing("digits"),
    ... )  # doctest: +SKIP
    >>> read_metadata(flatbuffer)["labels"][:2]  # doctest: +SKIP
    ['0', '1']
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from bnnconvert import __version__, io_quant, ir, tflite_metadata
from bnnconvert.checkpoint_files import MAX_SIDE_BYTES
from bnnconvert.errors import FlatbufferProblem, UsageProblem
from bnnconvert.limits import read_regular_file
from bnnconvert.preprocessing import PreprocessingSpec

NAME = "bnnconvert"
"""Name of the Model ``metadata`` entry holding bnnconvert's JSON."""
SCHEMA_VERSION = 1
"""Bumped when a reader of the previous version would misread the JSON."""
LABEL_FILE = "labels.txt"


def load_labels(path: Path) -> list[str]:
    """Read a label file: UTF-8, one label per line, in class-index order.

    Trailing whitespace of each line and blank lines at the end are ignored.

    Raises:
        UsageProblem: the file is missing, not UTF-8, empty, or has a blank line
            between labels.
    """
    if not os.path.lexists(path):
        raise UsageProblem(
            f"Expected a label file at {path}, found none; give labels= a text file "
            "with one label per line"
        )
    try:  # a regular file under the cap, checked before reading (a FIFO would block)
        raw = read_regular_file(path, MAX_SIDE_BYTES[LABEL_FILE], "a label file")
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UsageProblem(
            f"Expected a UTF-8 label file, got undecodable bytes at offset {e.start} of {path}; "
            "save it as UTF-8"
        ) from e
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise UsageProblem(
            f"Expected one label per line in {path}, got an empty file; "
            "write the class names in class-index order"
        )
    for number, line in enumerate(lines, start=1):
        if not line:
            raise UsageProblem(
                f"Expected a label on every line of {path}, got a blank line {number}; "
                "remove it or name that class"
            )
    return lines


def build_metadata(
    model: ir.Model,
    *,
    name: str,
    target: str,
    labels: Sequence[str] | None = None,
    preprocessing: PreprocessingSpec | None = None,
    version: str = "1",
    description: str = "",
    author: str = "",
    weights_sha256: str | None = None,
) -> dict[str, Any]:
    """The ``bnnconvert`` JSON for ``model``, checked against its input and output.

    Raises:
        UsageProblem: the labels or preprocessing do not fit the model's tensors.
    """
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1 or not graph.outputs:
        raise UsageProblem(
            f"Expected a model with one input and at least one output, got "
            f"{len(graph.inputs)} inputs and {len(graph.outputs)} outputs; "
            "metadata describes single-input models"
        )
    input_info = _input_info(graph, graph.inputs[0])
    if preprocessing is not None:
        _check_image_input(input_info, preprocessing)
    names = _output_names(model)
    outputs = [_output_info(graph, k, t, names.get(t)) for k, t in enumerate(graph.outputs)]
    classifier = next((o for o in outputs if o["kind"] == "classifier"), None)
    if labels is not None:
        labels = list(labels)
        if classifier is None:
            raise UsageProblem(
                f"Expected a classifier output of shape (1, N) for labels=, got "
                f"{', '.join(_shape_text(o) for o in outputs)}; leave out labels="
            )
        if len(labels) != classifier["classes"]:
            raise UsageProblem(
                f"Expected {classifier['classes']} labels (the model's output "
                f"{classifier['name']!r} has {classifier['classes']} classes), got {len(labels)};"
                " give one label per class, in class-index order"
            )
    return {
        "schema_version": SCHEMA_VERSION,
        "model": {
            "name": name,
            "version": version,
            "description": description,
            "author": author,
            "weights_sha256": weights_sha256,
        },
        "producer": {"name": "bnnconvert", "version": __version__, "target": target},
        "input": input_info,
        "preprocessing": preprocessing.to_dict() if preprocessing is not None else None,
        "output": classifier or outputs[0],
        "outputs": outputs,
        "labels": labels,
    }


def _output_names(model: ir.Model) -> dict[int, str]:
    """Subgraph 0's output tensors -> their names in the model's signature, if it has one."""
    for signature in model.signature_defs:
        if signature.subgraph_index == 0:
            return {t: key for key, t in signature.outputs.items()}
    return {}


def _output_info(graph: ir.Subgraph, k: int, tensor_index: int, name: str | None) -> dict[str, Any]:
    """Output ``k``: a classifier (rank 2, ``(1, N)``) with classes and scores, else a tensor."""
    tensor = graph.tensors[tensor_index]
    info: dict[str, Any] = {
        "index": k,
        "name": name or tensor.name,
        "tensor": tensor.name,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "quantization": _quantization(tensor),
    }
    if len(tensor.shape) == 2 and tensor.shape[0] in (1, -1) and tensor.shape[1] > 0:
        producer = ir.producer(graph, tensor_index)
        softmax = producer is not None and graph.operators[producer].opcode == "SOFTMAX"
        info.update(
            kind="classifier",
            classes=int(tensor.shape[1]),
            scores="probabilities" if softmax else "logits",
        )
    else:
        info["kind"] = "tensor"
    return info


def _shape_text(output: dict[str, Any]) -> str:
    shape = "x".join(str(d) for d in output["shape"]) or "scalar"
    return f"{output['name']!r} {shape} {output['dtype']}"


def _input_info(graph: ir.Subgraph, tensor_index: int) -> dict[str, Any]:
    tensor = graph.tensors[tensor_index]
    info: dict[str, Any] = {
        "index": 0,
        "tensor": tensor.name,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
        "quantization": _quantization(tensor),
    }
    if len(tensor.shape) == 4:
        _, height, width, channels = tensor.shape
        info.update(layout="NHWC", height=height, width=width, channels=channels)
    return info


def _quantization(tensor: ir.Tensor) -> dict[str, Any] | None:
    """``{"scale", "zero_point"}`` of an int8 input/output (the app quantizes with it); None."""
    quant = io_quant.tensor_quantization(tensor)
    return None if quant is None else {"scale": quant.scale, "zero_point": quant.zero_point}


def _check_image_input(info: dict[str, Any], spec: PreprocessingSpec) -> None:
    shape, dtype = info["shape"], info["dtype"]
    # An int8 input is fed the preprocessed floats quantized with its own scale/zero point.
    if len(shape) != 4 or shape[0] not in (1, -1) or dtype not in ("float32", "int8"):
        raise UsageProblem(
            f"Expected a float32 or int8 image input of shape [1, H, W, C] for preprocessing=, "
            f"got {dtype} {shape}; export the model with a float input, or leave out "
            "preprocessing="
        )
    if info["channels"] != spec.channels:
        hint = "order=gray" if info["channels"] == 1 else "order=rgb or order=bgr"
        raise UsageProblem(
            f"Expected preprocessing for {info['channels']} input channel(s), got "
            f"order={spec.color} ({spec.channels} channel(s)); use {hint}"
        )


def standard_metadata(metadata: dict[str, Any]) -> tflite_metadata.ModelInfo:
    """The TFLite ``ModelMetadata`` view of a ``bnnconvert`` JSON dict."""
    model = metadata["model"]
    labelled = metadata["output"] if metadata.get("labels") else None
    outputs = [
        _standard_output(o, labelled) for o in metadata.get("outputs") or [metadata["output"]]
    ]
    return tflite_metadata.ModelInfo(
        name=model["name"],
        description=model["description"],
        version=model["version"],
        author=model["author"],
        inputs=[_standard_input(metadata["input"], metadata.get("preprocessing"))],
        outputs=outputs,
    )


def _standard_input(
    inp: dict[str, Any], spec_dict: dict[str, Any] | None
) -> tflite_metadata.TensorInfo:
    """The input named by what its shape says it is: image, features, sequence or tensor.

    Only an image with preprocessing gets a colour space and TFLite's normalisation.
    """
    dims = inp["shape"][1:]
    if spec_dict is not None:
        spec = PreprocessingSpec.from_dict(spec_dict)
        mean, std = spec.per_channel()
        low, high = spec.value_range()
        return tflite_metadata.TensorInfo(
            name="image",
            description=f"Input image, {inp['height']}x{inp['width']} {spec.color}; "
            "crop and resize as in the bnnconvert metadata.",
            image_color_space=spec.color if spec.color in ("rgb", "gray") else "unknown",
            # TFLite normalises 0..255 pixels: (p - mean) / std.
            mean=[m * spec.scale for m in mean],
            std=[s * spec.scale for s in std],
            stats_min=list(low),
            stats_max=list(high),
        )
    if "layout" in inp:
        name = "image"
        text = f"{inp['height']}x{inp['width']} pixels of {inp['channels']} channel(s)"
    elif len(dims) == 1:
        name, text = "features", f"{dims[0]} feature values"
    elif len(dims) == 2:
        name, text = "sequence", f"{dims[0]} steps of {dims[1]} value(s)"
    else:
        name, text = "input", f"tensor {'x'.join(str(d) for d in inp['shape'])}"
    return tflite_metadata.TensorInfo(name=name, description=f"{text}, {inp['dtype']}.")


def _standard_output(
    output: dict[str, Any], labelled: dict[str, Any] | None
) -> tflite_metadata.TensorInfo:
    """A classifier's scores (with the label file when ``labelled`` is it), or a plain tensor."""
    if output.get("kind", "classifier") != "classifier":
        shape = "x".join(str(d) for d in output["shape"])
        return tflite_metadata.TensorInfo(
            name=output.get("name", output["tensor"]),
            description=f"Output tensor {shape} {output['dtype']}.",
        )
    probabilities = output["scores"] == "probabilities"
    is_labelled = labelled is not None and labelled["index"] == output["index"]
    return tflite_metadata.TensorInfo(
        name="probability" if probabilities else "logits",
        description=f"Scores of the {output['classes']} classes ({output['scores']}).",
        stats_min=[0.0] if probabilities else None,
        stats_max=[1.0] if probabilities else None,
        label_file=LABEL_FILE if is_labelled else None,
    )


def embed_metadata(
    flatbuffer: bytes,
    *,
    name: str,
    target: str,
    labels: Sequence[str] | None = None,
    preprocessing: PreprocessingSpec | None = None,
    version: str = "1",
    description: str = "",
    author: str = "",
    weights_sha256: str | None = None,
) -> bytes:
    """Return ``flatbuffer`` with both metadata entries (and ``labels.txt``) added.

    Existing ``bnnconvert`` / ``TFLITE_METADATA`` entries are replaced; other
    metadata (LCE's ``min_runtime_version`` ...) is kept. Call this last: a
    labels zip appended here does not survive a later IR read/write (the JSON
    entries do).

    Arguments:
        flatbuffer: a TFLite model (the converter's output or a written IR model).
        name, version, description, author: describe the model.
        target: the export target name (e.g. ``"arm64"``).
        labels: class names in class-index order (see :func:`load_labels`).
        preprocessing: see :func:`bnnconvert.preprocessing.parse_preprocessing`.
        weights_sha256: the digest of the Keras weights it was exported from
            (:func:`bnnconvert.validation.identity.weights_digest`), for ``validate``.

    Raises:
        FlatbufferProblem: ``flatbuffer`` is not a readable TFLite model.
        UsageProblem: labels or preprocessing do not fit the model.
    """
    model = ir.read(flatbuffer)
    metadata = build_metadata(
        model,
        name=name,
        target=target,
        labels=labels,
        preprocessing=preprocessing,
        version=version,
        description=description,
        author=author,
        weights_sha256=weights_sha256,
    )
    model.metadata[NAME] = json.dumps(metadata, ensure_ascii=False, indent=1).encode("utf-8")
    model.metadata[tflite_metadata.NAME] = tflite_metadata.write(standard_metadata(metadata))
    out = ir.write(model)
    if labels:
        text = "".join(f"{label}\n" for label in labels).encode("utf-8")
        out = tflite_metadata.append_associated_files(out, {LABEL_FILE: text})
    return out


def _entries(model: ir.Model | bytes) -> dict[str, bytes]:
    return (ir.read(model) if isinstance(model, bytes | bytearray) else model).metadata


def read_metadata(model: ir.Model | bytes) -> dict[str, Any] | None:
    """The ``bnnconvert`` metadata of a model as a dict, or None if it has none.

    Raises:
        FlatbufferProblem: the entry is not JSON, or is from a newer bnnconvert.
    """
    data = _entries(model).get(NAME)
    if data is None:
        return None
    try:
        metadata = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FlatbufferProblem(
            f"Expected UTF-8 JSON in the model's {NAME!r} metadata, got {len(data)} bytes that "
            f"do not parse ({e}); re-export the model"
        ) from e
    found = metadata.get("schema_version") if isinstance(metadata, dict) else None
    if not isinstance(found, int) or found > SCHEMA_VERSION:
        raise FlatbufferProblem(
            f"Expected bnnconvert metadata schema version <= {SCHEMA_VERSION}, got {found!r}; "
            "upgrade bnnconvert to read this model"
        )
    return metadata


def summary(metadata: dict[str, Any]) -> dict[str, str]:
    """Short human-readable lines for a ``bnnconvert`` metadata dict (for ``inspect``).

    Example:
        >>> summary(read_metadata(model_bytes))["input"]  # doctest: +SKIP
        '32x32x1 float32 NHWC'
    """
    model, producer, inp = metadata["model"], metadata["producer"], metadata["input"]
    shape = (
        f"{inp['height']}x{inp['width']}x{inp['channels']} {inp['dtype']} {inp['layout']}"
        if "layout" in inp
        else f"{'x'.join(str(d) for d in inp['shape'])} {inp['dtype']}"
    )
    rows = {
        "model": f"{model['name']} v{model['version']}",
        "producer": f"bnnconvert {producer['version']}, target {producer['target']}",
        "input": shape + _quantization_text(inp),
    }
    outputs = metadata.get("outputs") or [metadata["output"]]
    for output in outputs:
        key = "output" if len(outputs) == 1 else f"output {output.get('name', output['index'])}"
        rows[key] = describe_output(output)
    pre = metadata.get("preprocessing")
    if pre is None:
        needed = " (the Android demo needs it: export with --preprocessing)"
        rows["preprocessing"] = "none" + (needed if "layout" in inp else "")
    else:
        spec = PreprocessingSpec.from_dict(pre)
        rows["preprocessing"] = spec.describe(inp.get("height"), inp.get("width"))
    labels = metadata.get("labels")
    if labels:
        shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
        rows["labels"] = f"{len(labels)}: {shown}"
    else:
        rows["labels"] = "none"
    if model.get("description"):
        rows["description"] = model["description"]
    return rows


def describe_output(output: dict[str, Any]) -> str:
    """``10 classes (logits)`` for a classifier, ``tensor 1x3x3x32 float32`` otherwise.

    Metadata written before outputs had a ``kind`` describes a classifier.
    """
    quant = _quantization_text(output)
    if output.get("kind", "classifier") == "classifier":
        return f"{output['classes']} classes ({output['scores']}){quant}"
    return f"tensor {'x'.join(str(d) for d in output['shape'])} {output['dtype']}{quant}"


def _quantization_text(tensor: dict[str, Any]) -> str:
    quant = tensor.get("quantization")
    if not quant:
        return ""
    return f", scale {quant['scale']:.6g}, zero point {quant['zero_point']}"


def read_tflite_metadata(model: ir.Model | bytes) -> dict[str, Any] | None:
    """The standard ``TFLITE_METADATA`` entry as a dict, or None if there is none.

    Raises:
        FlatbufferProblem: the entry is not a ``ModelMetadata`` flatbuffer.
    """
    data = _entries(model).get(tflite_metadata.NAME)
    if data is None:
        return None
    try:
        return asdict(tflite_metadata.read(data))
    except (ValueError, IndexError, struct.error, UnicodeDecodeError) as e:
        raise FlatbufferProblem(
            f"Expected a TFLite ModelMetadata flatbuffer in {tflite_metadata.NAME!r}, got "
            f"{len(data)} bytes that do not parse ({e}); re-export the model"
        ) from e
