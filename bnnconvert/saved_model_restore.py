"""Load a Keras SavedModel without running anything stored in it.

``tf.saved_model.load`` and tf-keras's ``load_model`` on a SavedModel restore
its tracked resources (running their initializers), revive layers that cannot
be rebuilt from config by running their traced graphs, and fall back to the
plain TensorFlow loader when ``keras_metadata.pb`` is empty. None of that is
used here. Instead:

1. the root model's Keras config is read from ``keras_metadata.pb`` and
   checked against :mod:`bnnconvert.config_allowlist`;
2. the model is built from that config with bnnconvert's own code (Keras
   layer constructors, in safe mode);
3. its variables are restored from the SavedModel's ``variables/`` checkpoint,
   matched through the checkpoint's object graph (``layer_with_weights-0``
   ...), and every variable of the model must be matched.

No function, graph or initializer from the file is called. A SavedModel that
can only be used by running its graphs (no Keras metadata, a subclassed model,
custom layers) is refused with a pointer to ``--trust-checkpoint``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bnnconvert import _tf, checkpoint_files, limits
from bnnconvert.config_allowlist import check_config, check_loaded_model
from bnnconvert.errors import CheckpointProblem, first_line

METADATA_NAME = "keras_metadata.pb"
_GRAPH_MODELS = ("Functional", "Sequential")
_TRUST = (
    "can only be loaded by running graphs stored in it; re-save it with tf-keras "
    "model.save('model.keras'), or pass trust_checkpoint= if you trust where it comes from"
)


def _decode(node: Any) -> Any:
    """Undo tf-keras's JSON encoding of tuples and shapes (``{"class_name": "__tuple__"}``)."""
    if isinstance(node, dict):
        if node.get("class_name") in ("__tuple__", "TensorShape") and set(node) == {
            "class_name",
            "items",
        }:
            return [_decode(item) for item in node["items"]]
        return {key: _decode(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_decode(item) for item in node]
    return node


def root_config(folder: Path) -> dict[str, Any]:
    """The root model's ``{"class_name", "config"}`` from ``keras_metadata.pb``.

    Raises:
        CheckpointProblem: no usable Keras metadata, or a model that is not a
            graph network (subclassed).
    """
    metadata_file = folder / METADATA_NAME
    if not metadata_file.exists():
        raise CheckpointProblem(f"{folder}: a SavedModel without Keras metadata {_TRUST}")
    raw = limits.read_regular_file(
        metadata_file, checkpoint_files.MAX_CONFIG_BYTES, "Keras metadata"
    )
    if not raw:
        raise CheckpointProblem(f"{folder}: a SavedModel with empty Keras metadata {_TRUST}")
    metadata = _tf.keras_saved_metadata().SavedMetadata()
    try:
        metadata.ParseFromString(raw)
        root = next(node for node in metadata.nodes if node.node_path == "root")
        meta = json.loads(root.metadata)
    except StopIteration as e:
        raise CheckpointProblem(f"{folder}: Keras metadata without a root model {_TRUST}") from e
    except Exception as e:
        raise CheckpointProblem(f"{metadata_file}: unreadable Keras metadata ({e})") from e
    class_name = meta.get("class_name") if isinstance(meta, dict) else None
    if class_name not in _GRAPH_MODELS or not meta.get("is_graph_network"):
        raise CheckpointProblem(
            f"{folder}: a subclassed Keras model ({str(class_name)[:60]!r}, not Functional or "
            "Sequential) can only be loaded by running graphs stored in it (as .keras, by "
            "running its class's code); rebuild it as a Functional model "
            "(keras.Model(inputs, outputs) of the same layers), copy the weights over and "
            "save that with model.save('model.keras'), or pass trust_checkpoint= if you trust "
            "where it comes from"
        )
    return _decode({"class_name": class_name, "config": meta.get("config")})


def load_saved_model(folder: Path) -> Any:
    """Build the model from its checked config and restore its variables.

    Arguments:
        folder: the SavedModel directory.

    Returns:
        The tf-keras model, every variable restored from ``variables/``.

    Raises:
        CheckpointProblem: refused config, or variables that do not fit it.
    """
    config = root_config(folder)
    check_config(
        config,
        str(folder / METADATA_NAME),
        "trust_checkpoint= (Keras then runs the layer's graph stored in the SavedModel)",
    )
    for part in sorted((folder / "variables").glob("variables.*")):
        checkpoint_files.checked_file(
            part, checkpoint_files.MAX_CHECKPOINT_BYTES, "a SavedModel's variables"
        )
    keras = _tf.keras()
    lq = _tf.larq()
    try:
        with _tf.keras_safe_mode():
            model = keras.models.model_from_config(config)
    except Exception as e:
        raise CheckpointProblem(
            f"{folder}: Keras could not rebuild the model from its config "
            f"({first_line(e)}); re-save it with tf-keras"
        ) from e
    prefix = folder / "variables" / "variables"
    try:
        status = model.load_weights(str(prefix))
        status.assert_existing_objects_matched()
    except Exception as e:
        raise CheckpointProblem(
            f"{prefix}: the variables do not fit the model's config ({first_line(e)}); "
            "re-save the model with tf-keras"
        ) from e
    check_loaded_model(model, keras, lq, str(folder))
    return model
