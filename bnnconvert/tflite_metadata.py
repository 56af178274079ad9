"""The standard TFLite model metadata: a ``ModelMetadata`` flatbuffer, written by hand.

TFLite tools (the Task Library, Android Studio's model viewer, tflite-support's
``MetadataDisplayer``) read a model's description from the Model's ``metadata``
entry named ``TFLITE_METADATA``: a flatbuffer of tflite-support's
``metadata_schema.fbs`` (file identifier ``M001``), with associated files such
as the label list packed as a zip archive appended to the model file.

The ``tflite-support`` wheel that ships the generated Python for that schema
pins ``protobuf < 4``, which TensorFlow 2.21 cannot use, so this module writes
and reads the few tables bnnconvert needs with the ``flatbuffers`` Builder
directly. Field slots follow the schema's declaration order (a union takes
two slots: its type, then its value):

- ``ModelMetadata``: name 0, description 1, version 2, subgraph_metadata 3,
  author 4, license 5, associated_files 6, min_parser_version 7
- ``SubGraphMetadata``: name 0, description 1, input_tensor_metadata 2,
  output_tensor_metadata 3
- ``TensorMetadata``: name 0, description 1, dimension_names 2, content 3,
  process_units 4, stats 5, associated_files 6
- ``Content``: content_properties (type 0, value 1); ``ImageProperties``:
  color_space 0; ``ProcessUnit``: options (type 0, value 1);
  ``NormalizationOptions``: mean 0, std 1; ``Stats``: max 0, min 1;
  ``AssociatedFile``: name 0, description 1, type 2
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import flatbuffers
from flatbuffers import number_types as N
from flatbuffers.table import Table

NAME = "TFLITE_METADATA"
"""Name of the Model ``metadata`` entry that TFLite tools look for."""
FILE_IDENTIFIER = b"M001"
MIN_PARSER_VERSION = "1.0.0"
"""Everything written here exists since version 1.0.0 of the metadata schema."""

# Enum and union values from metadata_schema.fbs.
COLOR_SPACES = {"unknown": 0, "rgb": 1, "gray": 2}
CONTENT_FEATURE = 1  # ContentProperties.FeatureProperties
CONTENT_IMAGE = 2  # ContentProperties.ImageProperties
PROCESS_NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions
FILE_TENSOR_AXIS_LABELS = 2  # AssociatedFileType.TENSOR_AXIS_LABELS


@dataclass
class TensorInfo:
    """What the standard metadata says about one input or output tensor."""

    name: str
    description: str = ""
    image_color_space: str | None = None
    """``"rgb"``, ``"gray"`` or ``"unknown"`` for an image tensor; None for a feature tensor."""
    mean: list[float] | None = None
    std: list[float] | None = None
    stats_min: list[float] | None = None
    stats_max: list[float] | None = None
    label_file: str | None = None


@dataclass
class ModelInfo:
    """The fields of a ``ModelMetadata`` that bnnconvert writes (one subgraph)."""

    name: str
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""
    inputs: list[TensorInfo] = field(default_factory=list)
    outputs: list[TensorInfo] = field(default_factory=list)
    min_parser_version: str = MIN_PARSER_VERSION


def write(info: ModelInfo) -> bytes:
    """Serialise ``info`` as a ``ModelMetadata`` flatbuffer with identifier ``M001``."""
    b = flatbuffers.Builder(1024)
    inputs = _table_vector(b, [_tensor(b, t) for t in info.inputs])
    outputs = _table_vector(b, [_tensor(b, t) for t in info.outputs])
    b.StartObject(4)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraph = b.EndObject()
    subgraphs = _table_vector(b, [subgraph])
    strings = {
        slot: b.CreateString(value)
        for slot, value in (
            (0, info.name),
            (1, info.description),
            (2, info.version),
            (4, info.author),
            (5, info.license),
            (7, info.min_parser_version),
        )
        if value
    }
    b.StartObject(8)  # ModelMetadata
    for slot, offset in strings.items():
        b.PrependUOffsetTRelativeSlot(slot, offset, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.Finish(b.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def _table_vector(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for offset in reversed(offsets):
        b.PrependUOffsetTRelative(offset)
    return b.EndVector()


def _float_vector(b: flatbuffers.Builder, values: list[float]) -> int:
    b.StartVector(4, len(values), 4)
    for value in reversed(values):
        b.PrependFloat32(value)
    return b.EndVector()


def _tensor(b: flatbuffers.Builder, t: TensorInfo) -> int:
    name = b.CreateString(t.name)
    description = b.CreateString(t.description) if t.description else 0
    # Content: image properties (colour space) or plain feature properties.
    if t.image_color_space is not None:
        b.StartObject(2)  # ImageProperties
        b.PrependInt8Slot(0, COLOR_SPACES[t.image_color_space], 0)
        properties, properties_type = b.EndObject(), CONTENT_IMAGE
    else:
        b.StartObject(0)  # FeatureProperties
        properties, properties_type = b.EndObject(), CONTENT_FEATURE
    b.StartObject(3)  # Content
    b.PrependUint8Slot(0, properties_type, 0)
    b.PrependUOffsetTRelativeSlot(1, properties, 0)
    content = b.EndObject()
    process_units = 0
    if t.mean is not None and t.std is not None:
        mean, std = _float_vector(b, t.mean), _float_vector(b, t.std)
        b.StartObject(2)  # NormalizationOptions
        b.PrependUOffsetTRelativeSlot(0, mean, 0)
        b.PrependUOffsetTRelativeSlot(1, std, 0)
        options = b.EndObject()
        b.StartObject(2)  # ProcessUnit
        b.PrependUint8Slot(0, PROCESS_NORMALIZATION, 0)
        b.PrependUOffsetTRelativeSlot(1, options, 0)
        process_units = _table_vector(b, [b.EndObject()])
    stats = 0
    if t.stats_min is not None and t.stats_max is not None:
        high, low = _float_vector(b, t.stats_max), _float_vector(b, t.stats_min)
        b.StartObject(2)  # Stats
        b.PrependUOffsetTRelativeSlot(0, high, 0)
        b.PrependUOffsetTRelativeSlot(1, low, 0)
        stats = b.EndObject()
    files = 0
    if t.label_file:
        file_name = b.CreateString(t.label_file)
        file_description = b.CreateString("Labels for the output classes, one per line.")
        b.StartObject(5)  # AssociatedFile
        b.PrependUOffsetTRelativeSlot(0, file_name, 0)
        b.PrependUOffsetTRelativeSlot(1, file_description, 0)
        b.PrependInt8Slot(2, FILE_TENSOR_AXIS_LABELS, 0)
        files = _table_vector(b, [b.EndObject()])
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, name, 0)
    if description:
        b.PrependUOffsetTRelativeSlot(1, description, 0)
    b.PrependUOffsetTRelativeSlot(3, content, 0)
    if process_units:
        b.PrependUOffsetTRelativeSlot(4, process_units, 0)
    if stats:
        b.PrependUOffsetTRelativeSlot(5, stats, 0)
    if files:
        b.PrependUOffsetTRelativeSlot(6, files, 0)
    return b.EndObject()


class _Reader:
    """Field access on one table of a flatbuffer, by slot number."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.t = Table(bytearray(buf), pos)

    def _offset(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str:
        o = self._offset(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8") if o else ""

    def int8(self, slot: int) -> int:
        o = self._offset(slot)
        return self.t.Get(N.Int8Flags, o + self.t.Pos) if o else 0

    def table(self, slot: int) -> _Reader | None:
        o = self._offset(slot)
        return _Reader(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list[_Reader]:
        o = self._offset(slot)
        if not o:
            return []
        start = self.t.Vector(o)
        return [
            _Reader(self.t.Bytes, self.t.Indirect(start + 4 * i))
            for i in range(self.t.VectorLen(o))
        ]

    def floats(self, slot: int) -> list[float] | None:
        o = self._offset(slot)
        if not o:
            return None
        start = self.t.Vector(o)
        return [self.t.Get(N.Float32Flags, start + 4 * i) for i in range(self.t.VectorLen(o))]


def read(buf: bytes) -> ModelInfo:
    """Parse a ``ModelMetadata`` flatbuffer written by :func:`write` (or any 1.x writer).

    Raises:
        ValueError: the buffer does not carry the ``M001`` identifier.
    """
    if len(buf) < 8 or buf[4:8] != FILE_IDENTIFIER:
        raise ValueError(f"not a TFLite ModelMetadata flatbuffer (identifier {buf[4:8]!r})")
    root = _Reader(buf, flatbuffers.encode.Get(N.UOffsetTFlags.packer_type, buf, 0))
    info = ModelInfo(
        name=root.string(0),
        description=root.string(1),
        version=root.string(2),
        author=root.string(4),
        license=root.string(5),
        min_parser_version=root.string(7),
    )
    subgraphs = root.tables(3)
    if subgraphs:
        info.inputs = [_read_tensor(t) for t in subgraphs[0].tables(2)]
        info.outputs = [_read_tensor(t) for t in subgraphs[0].tables(3)]
    return info


def _read_tensor(t: _Reader) -> TensorInfo:
    info = TensorInfo(name=t.string(0), description=t.string(1))
    content = t.table(3)
    if content is not None and content.int8(0) == CONTENT_IMAGE:
        image = content.table(1)
        space = image.int8(0) if image is not None else 0
        info.image_color_space = {v: k for k, v in COLOR_SPACES.items()}.get(space, "unknown")
    for unit in t.tables(4):
        options = unit.table(1)
        if unit.int8(0) == PROCESS_NORMALIZATION and options is not None:
            info.mean, info.std = options.floats(0), options.floats(1)
    stats = t.table(5)
    if stats is not None:
        info.stats_max, info.stats_min = stats.floats(0), stats.floats(1)
    for file in t.tables(6):
        if file.int8(2) == FILE_TENSOR_AXIS_LABELS:
            info.label_file = file.string(0)
    return info


def append_associated_files(model_bytes: bytes, files: dict[str, bytes]) -> bytes:
    """Append ``files`` as a zip archive after the flatbuffer, as TFLite tools expect.

    The model stays a valid flatbuffer (readers ignore bytes past its end) and
    becomes a valid zip file whose member offsets count from the file start.
    """
    out = io.BytesIO(model_bytes)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, mode="a", compression=zipfile.ZIP_STORED) as archive:
        for name, data in files.items():
            member = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            archive.writestr(member, data)
    return out.getvalue()


def associated_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files of a zip archive appended to a model, or ``{}`` if there is none."""
    if not zipfile.is_zipfile(io.BytesIO(model_bytes)):
        return {}
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def associated_file_names(model_bytes: bytes) -> list[str]:
    """Names of the files zipped onto the end of a model (without reading them), or ``[]``."""
    try:
        if not zipfile.is_zipfile(io.BytesIO(model_bytes)):
            return []
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return []


def describe(info: dict[str, Any]) -> str:
    """One line for a ``ModelMetadata`` read by :func:`read` (as a dict, ``dataclasses.asdict``).

    Example:
        ``digits v1; input image: gray image, (pixel − 255) / −255; output probability:
        range 0..1, labels in labels.txt``
    """
    head = info.get("name") or "unnamed"
    if info.get("version"):
        head += f" v{info['version']}"
    parts = [head]
    for role in ("inputs", "outputs"):
        for tensor in info.get(role) or []:
            details = []
            if tensor.get("image_color_space"):
                details.append(f"{tensor['image_color_space']} image")
            if tensor.get("mean") is not None and tensor.get("std") is not None:
                details.append(f"(pixel − {_numbers(tensor['mean'])}) / {_numbers(tensor['std'])}")
            if tensor.get("stats_min") is not None and tensor.get("stats_max") is not None:
                details.append(
                    f"range {_numbers(tensor['stats_min'])}..{_numbers(tensor['stats_max'])}"
                )
            if tensor.get("label_file"):
                details.append(f"labels in {tensor['label_file']}")
            if not details and tensor.get("description"):
                details.append(tensor["description"].rstrip("."))
            text = f"{role[:-1]} {tensor.get('name') or '?'}"
            parts.append(f"{text}: {', '.join(details)}" if details else text)
    return "; ".join(parts)


def _numbers(values: list[float]) -> str:
    shown = ",".join(f"{v + 0.0:.4g}" for v in values)  # + 0.0: no "-0"
    return f"[{shown}]" if len(values) > 1 else shown
