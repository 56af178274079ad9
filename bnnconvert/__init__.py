"""bnnconvert: trained Larq BNN checkpoints to bitpacked LCE flatbuffers.

The Python API mirrors the command line, one function per command, each
returning a result object with a short ``repr`` and ``to_dict()``::

    import bnnconvert

    exported = bnnconvert.export("models/digits", target="arm64", output_dir="out")
    report = bnnconvert.inspect(exported.model_path)
    parity = bnnconvert.validate("models/digits", exported.model_path, samples=32)
    timing = bnnconvert.bench(exported.model_path, runs=20, output_dir="out/bench")

Nothing heavy is imported by ``import bnnconvert``: each name is resolved on
first use (module ``__getattr__``), and TensorFlow only when a function that
needs it runs. See ``docs/api.md``.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__version__ = "0.1.0"

# Public name -> (module, attribute). The four commands share their names with
# the submodules that implement them (bnnconvert.export, ...): see _Package.
_API = {
    "export": ("bnnconvert.export", "export"),
    "ExportResult": ("bnnconvert.export", "ExportResult"),
    "validate": ("bnnconvert.validate", "validate"),
    "ValidationResult": ("bnnconvert.validate", "ValidationResult"),
    "inspect": ("bnnconvert.inspect", "inspect_model"),
    "InspectResult": ("bnnconvert.inspect", "InspectResult"),
    "bench": ("bnnconvert.bench", "bench"),
    "BenchResult": ("bnnconvert.bench", "BenchResult"),
    "write_bench_reports": ("bnnconvert.bench", "write_reports"),
    "BnnConvertError": ("bnnconvert.errors", "BnnConvertError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Import the module behind a public name on first use."""
    if name not in _API:
        raise AttributeError(f"module 'bnnconvert' has no attribute {name!r}")
    module, attribute = _API[name]
    return getattr(importlib.import_module(module), attribute)


def __dir__() -> list[str]:
    return sorted({"__version__", *_API})


class _Package(types.ModuleType):
    """Keeps ``bnnconvert.export`` (etc.) the function after its submodule is imported.

    Importing ``bnnconvert.export`` makes Python set the package attribute
    ``export`` to the submodule; for the public names that would hide the
    function, so that assignment is skipped (the submodule stays importable
    from ``sys.modules`` as ``from bnnconvert.export import ...``).
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _API and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
