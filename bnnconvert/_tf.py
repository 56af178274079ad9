"""Import TensorFlow, tf-keras and Larq the one way this package supports.

Larq 0.14 needs the Keras 2 API (``tf-keras``); TensorFlow 2.21 picks Keras 3
unless ``TF_USE_LEGACY_KERAS=1`` is set *before* TensorFlow is imported. Every
module of bnnconvert that needs TensorFlow goes through :func:`tensorflow`,
which arranges that, keeps the import quiet unless verbose output was asked
for, and refuses to continue on a process where Keras 3 is already active.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator
from types import ModuleType
from typing import Any

from bnnconvert import tflite_errors
from bnnconvert.errors import EnvironmentProblem, FlatbufferProblem

_verbose = False


def set_verbose(verbose: bool) -> None:
    """Let TensorFlow's own logging through (``--verbose``)."""
    global _verbose
    _verbose = verbose


@contextlib.contextmanager
def quiet_native() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null while native code logs at import.

    TensorFlow's C++ side prints oneDNN and CUDA notes before its log level
    is read, so environment variables alone do not silence it.
    """
    if _verbose:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _check_keras2(tf: ModuleType) -> None:
    if not tf.keras.layers.Layer.__module__.startswith("tf_keras"):
        raise EnvironmentProblem(
            "TensorFlow was imported with Keras 3 before bnnconvert; "
            "Larq needs Keras 2: set TF_USE_LEGACY_KERAS=1 before importing TensorFlow "
            "(or import bnnconvert first)"
        )


def tensorflow() -> ModuleType:
    """Return the ``tensorflow`` module, imported with Keras 2 and quietly."""
    already = "tensorflow" in sys.modules
    if not already:
        os.environ["TF_USE_LEGACY_KERAS"] = "1"
        if not _verbose:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        with quiet_native():
            import tensorflow as tf
        if not _verbose:
            tf.get_logger().setLevel(logging.ERROR)
            with contextlib.suppress(ImportError):
                from absl import logging as absl_logging

                absl_logging.set_verbosity(absl_logging.ERROR)
    import tensorflow as tf

    _check_keras2(tf)
    return tf


def keras() -> ModuleType:
    """Return ``tf_keras`` (the Keras 2 API that Larq builds on)."""
    tensorflow()
    with quiet_native():
        import tf_keras
    return tf_keras


@contextlib.contextmanager
def keras_safe_mode(enabled: bool = True) -> Iterator[None]:
    """Run a Keras load inside tf-keras's safe-mode scope, whatever the format.

    ``load_model(..., safe_mode=True)`` only reaches the ``.keras`` loader;
    the legacy ``.h5`` and SavedModel loaders consult the scope, in which
    ``Lambda`` layers and RNN cell wrappers refuse to unmarshal their bytecode.
    ``enabled=False`` is for ``--trust-checkpoint`` only.
    """
    keras()
    from tf_keras.src.saving.serialization_lib import SafeModeScope

    with SafeModeScope(enabled):
        yield


def keras_saved_metadata() -> ModuleType:
    """Return tf-keras's ``saved_metadata_pb2`` (the ``keras_metadata.pb`` schema)."""
    keras()
    from tf_keras.protobuf import saved_metadata_pb2

    return saved_metadata_pb2


def larq() -> ModuleType:
    """Return ``larq``, imported after TensorFlow is set up."""
    tensorflow()
    with quiet_native():
        import larq
    if not _verbose:
        # Training-time advice ("binary weight quantizer without kernel_constraint")
        # means nothing to an export; --verbose shows it.
        logging.getLogger("larq").setLevel(logging.ERROR)
    return larq


def lce() -> ModuleType:
    """Return ``larq_compute_engine``, imported after TensorFlow is set up."""
    tensorflow()
    with quiet_native():
        import larq_compute_engine
    return larq_compute_engine


def lce_interpreter(
    flatbuffer: bytes,
    *,
    num_threads: int = 1,
    use_reference_bconv: bool = False,
    use_indirect_bgemm: bool = False,
    use_xnnpack: bool = False,
) -> CheckedInterpreter:
    """Build LCE's Python interpreter for ``flatbuffer`` (x86_64 wheel).

    Raises:
        FlatbufferProblem: the runtime cannot load the model (an unresolved custom
            op, an op version it does not know ...), with the cause TFLite printed.
    """
    tensorflow()  # LCE's package imports TensorFlow: make sure it gets Keras 2
    with quiet_native():
        from larq_compute_engine.tflite.python.interpreter import (
            Interpreter,
        )

    native = _NativeOutput()
    try:
        with capture_native_stderr(native):
            interpreter = Interpreter(
                flatbuffer,
                num_threads=num_threads,
                use_reference_bconv=use_reference_bconv,
                use_indirect_bgemm=use_indirect_bgemm,
                use_xnnpack=use_xnnpack,
            )
    except RuntimeError as e:
        # The cause is on the ERROR: lines TFLite printed; the exception only says
        # "the following was false: interpreter_->AllocateTensors() == kTfLiteOk".
        detail = tflite_errors.explain(f"{native.text}\n{e}", binary=False)
        raise FlatbufferProblem(f"LCE's interpreter cannot load the model: {detail}") from e
    return CheckedInterpreter(interpreter)


class CheckedInterpreter:
    """LCE's interpreter whose ``predict`` fails with one line, not a ``RuntimeError``.

    Every other attribute (``input_types``, ``input_shapes`` ...) is LCE's own.
    """

    def __init__(self, interpreter: Any) -> None:
        self._interpreter = interpreter

    def __getattr__(self, name: str) -> Any:
        return getattr(self._interpreter, name)

    def predict(self, x: Any, verbose: int = 0) -> Any:
        """LCE's ``predict``; raises :class:`FlatbufferProblem` when the runtime refuses."""
        try:
            return self._interpreter.predict(x, verbose=verbose)
        except RuntimeError as e:
            message = str(e).strip()
            detail = tflite_errors.cause(message, binary=False) or message
            raise FlatbufferProblem(f"LCE's interpreter failed to run the model: {detail}") from e


class _NativeOutput:
    """What native code wrote to file descriptor 2 (filled when the capture ends)."""

    text = ""


@contextlib.contextmanager
def capture_native_stderr(into: _NativeOutput, limit: int = 1 << 16) -> Iterator[None]:
    """Send file descriptor 2 to a temporary file; its first ``limit`` bytes go to ``into``.

    TFLite reports why a model cannot be loaded on stderr from C++, before the
    Python exception; capturing it lets the error line name the cause (and
    keeps raw strings from the model off the terminal).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            into.text = captured.read(limit).decode("utf-8", errors="replace")
