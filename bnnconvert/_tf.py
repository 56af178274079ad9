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
from collections.abc import Iterator
from types import ModuleType

from bnnconvert.errors import EnvironmentProblem

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
) -> object:
    """Build LCE's Python interpreter for ``flatbuffer`` (x86_64 wheel)."""
    tensorflow()  # LCE's package imports TensorFlow: make sure it gets Keras 2
    with quiet_native():
        from larq_compute_engine.tflite.python.interpreter import (
            Interpreter,
        )

    return Interpreter(
        flatbuffer,
        num_threads=num_threads,
        use_reference_bconv=use_reference_bconv,
        use_indirect_bgemm=use_indirect_bgemm,
        use_xnnpack=use_xnnpack,
    )
