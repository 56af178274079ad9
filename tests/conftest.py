"""Fixtures: small real BNNs, converted by the real LCE converter.

The helpers behind them live in ``tests/helpers.py`` (importable by tests).
"""

from __future__ import annotations

import pytest
from helpers import BUNDLED, make_tiny_bnn

from bnnconvert import _tf


@pytest.fixture(scope="session")
def tiny_bnn():
    """A small Keras BNN (32x32x3 in, 10 classes)."""
    return make_tiny_bnn()


@pytest.fixture(scope="session")
def tiny_bnn_tflite(tiny_bnn) -> bytes:
    """``tiny_bnn`` converted by LCE's converter (arm target)."""
    return _tf.lce().convert_keras_model(tiny_bnn)


@pytest.fixture(scope="session")
def bundled_export(tmp_path_factory):
    """The bundled digits model exported once per session (arm64, defaults): an ExportResult.

    Shared by every module that only reads the export; don't modify its files.
    """
    from bnnconvert.export import export

    return export(BUNDLED, target="arm64", output_dir=tmp_path_factory.mktemp("digits-arm64"))


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run the command line in this process: ``cli(*args) -> (exit code, stdout, stderr)``.

    Global state a run sets (--debug's environment variable, --verbose) is reset after it.
    """
    from bnnconvert import _tf
    from bnnconvert.cli.main import run

    monkeypatch.setenv("COLUMNS", "120")

    def invoke(*args: str) -> tuple[int, str, str]:
        monkeypatch.delenv("BNNCONVERT_DEBUG", raising=False)
        try:
            code = run(list(args))
        finally:
            _tf.set_verbose(False)
            monkeypatch.delenv("BNNCONVERT_DEBUG", raising=False)
        out = capsys.readouterr()
        return code, out.out, out.err

    return invoke
