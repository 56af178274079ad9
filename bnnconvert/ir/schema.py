"""The generated TFLite schema that LCE ships, loaded without TensorFlow.

``larq_compute_engine/__init__.py`` imports LCE's converter and with it
TensorFlow (seconds, and noisy). The schema module itself only needs
``flatbuffers``, so it is loaded straight from its file under a private name.
This is the only module of bnnconvert that names the schema module; the
rest of :mod:`bnnconvert.ir` uses the :data:`fb` object and the name tables
below.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

from bnnconvert.errors import EnvironmentProblem

_MODULE_NAME = "bnnconvert.ir._lce_tflite_schema"


def _load_schema() -> ModuleType:
    if _MODULE_NAME in sys.modules:
        return sys.modules[_MODULE_NAME]
    spec = importlib.util.find_spec("larq_compute_engine")
    if spec is None or not spec.submodule_search_locations:
        raise EnvironmentProblem(
            "larq-compute-engine is not installed; it ships the TFLite schema bnnconvert "
            "reads: pip install larq-compute-engine==0.16.0"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "mlir/python/tflite_schema.py"
    file_spec = importlib.util.spec_from_file_location(_MODULE_NAME, path)
    if file_spec is None or file_spec.loader is None or not path.is_file():
        raise EnvironmentProblem(
            f"larq-compute-engine has no TFLite schema at {path}; "
            "reinstall larq-compute-engine==0.16.0"
        )
    module = importlib.util.module_from_spec(file_spec)
    sys.modules[_MODULE_NAME] = module
    file_spec.loader.exec_module(module)
    return module


fb = _load_schema()
"""The generated schema module (``Model``, ``ModelT``, ``BuiltinOperator`` ...)."""

FILE_IDENTIFIER = b"TFL3"


def _enum(cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


BUILTIN_OPS: dict[int, str] = _enum(fb.BuiltinOperator)
"""Builtin operator code -> name, e.g. ``3 -> "CONV_2D"``."""
BUILTIN_CODES: dict[str, int] = {v: k for k, v in BUILTIN_OPS.items()}
CUSTOM_CODE = fb.BuiltinOperator.CUSTOM
PLACEHOLDER_FOR_GREATER_OP_CODES = fb.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES

OPTIONS_TYPES: dict[int, str] = {k: v for k, v in _enum(fb.BuiltinOptions).items() if k}
"""``builtin_options`` union type -> options table name, e.g. ``1 -> "Conv2DOptions"``."""
OPTIONS2_TYPES: dict[int, str] = {k: v for k, v in _enum(fb.BuiltinOptions2).items() if k}
"""``builtin_options_2`` union type -> options table name (StableHLO ops)."""

# TFLite TensorType -> numpy dtype name; types numpy has no dtype for get a plain name.
DTYPES: dict[int, str] = {
    fb.TensorType.FLOAT32: "float32",
    fb.TensorType.FLOAT16: "float16",
    fb.TensorType.INT32: "int32",
    fb.TensorType.UINT8: "uint8",
    fb.TensorType.INT64: "int64",
    fb.TensorType.STRING: "string",
    fb.TensorType.BOOL: "bool",
    fb.TensorType.INT16: "int16",
    fb.TensorType.COMPLEX64: "complex64",
    fb.TensorType.INT8: "int8",
    fb.TensorType.FLOAT64: "float64",
    fb.TensorType.COMPLEX128: "complex128",
    fb.TensorType.UINT64: "uint64",
    fb.TensorType.RESOURCE: "resource",
    fb.TensorType.VARIANT: "variant",
    fb.TensorType.UINT32: "uint32",
    fb.TensorType.UINT16: "uint16",
    fb.TensorType.INT4: "int4",
}
DTYPE_CODES: dict[str, int] = {v: k for k, v in DTYPES.items()}

PADDING = _enum(fb.Padding)
"""``padding`` option value -> name (``0 -> "SAME"``)."""
ACTIVATIONS = _enum(fb.ActivationFunctionType)
"""``fused_activation_function`` option value -> name (``1 -> "RELU"``)."""


def snake_case(camel: str) -> str:
    """``"dilationWFactor"`` -> ``"dilation_w_factor"`` (the names in schema.fbs)."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()


def options_fields(options_type: str) -> dict[str, str]:
    """Field names of an options table: schema (snake_case) name -> object-API attribute."""
    cls = getattr(fb, options_type + "T")
    return {snake_case(attr): attr for attr in vars(cls())}
