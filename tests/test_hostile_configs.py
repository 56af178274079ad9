"""Property: whatever a mutated real config makes bnnconvert load holds only allowlisted objects.

Real ``.keras`` and ``.h5`` configs are mutated (class, registered and module
names of any serialized object, attributes replaced by hostile objects,
nesting, inbound-node constants); every payload points at a marker file.
Whatever happens, the marker is never created, a refusal is a one-line
:class:`BnnConvertError`, and a model that does load contains only listed
Keras/Larq classes and functions.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hostile_files as hf
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bnnconvert import _tf, checkpoint
from bnnconvert.config_allowlist import (
    ACTIVATIONS,
    KERAS_LAYERS,
    LARQ_LAYERS,
    LARQ_QUANTIZERS,
)
from bnnconvert.errors import BnnConvertError

CLASS_NAMES = [
    "Lambda",
    "TFOpLambda",
    "SlicingOpLambda",
    "InstanceMethod",
    "ResidualWrapper",
    "QuantConv2D",
    "Conv2D",
    "Dense",
    "SteSign",
    "GlorotUniform",
    "function",
    "Functional",
    "__lambda__",
    "Model",
    "os",
]
MODULES = [
    None,
    "keras.layers",
    "keras.src.layers",
    "keras.src.layers.core.lambda_layer",
    "tf_keras.src.layers.core.tf_op_layer",
    "builtins",
    "larq.layers",
    "larq.quantizers",
    "os",
    "keras.initializers",
]
REGISTERED = [None, "Lambda", "QuantConv2D", "SteSign", "function", "larq>Lambda", "TFOpLambda"]
STRINGS = ["open", "exec", "ste_sign", "relu", "tf", "math", "context", "io.write_file"]


def _hostile_objects(marker: Path) -> list[Any]:
    lambda_layer = hf.hidden_lambda_layer(marker, "keras.layers")
    return [
        {"class_name": "function", "config": "open", "module": "builtins"},
        {"class_name": "function", "config": "ste_sign", "module": "builtins"},
        {"class_name": "function", "config": "system", "module": "os"},
        {**lambda_layer, "class_name": "Lambda", "registered_name": None},
        lambda_layer,
        hf.tf_op_layer(marker),
        {"class_name": "TimeDistributed", "config": {"name": "td", "layer": lambda_layer}},
        *STRINGS,
    ]


def _object_paths(node: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every dict with a ``class_name`` (a serialized object)."""
    found = [path] if isinstance(node, dict) and "class_name" in node else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _object_paths(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _object_paths(value, (*path, i))
    return found


def _at(node: Any, path: tuple) -> Any:
    for key in path:
        node = node[key]
    return node


@st.composite
def mutations(draw, config: dict[str, Any], marker: Path) -> dict[str, Any]:
    """One to three mutations of ``config`` (a deep copy)."""
    config = copy.deepcopy(config)
    for _ in range(draw(st.integers(1, 3))):
        paths = _object_paths(config)
        target = _at(config, draw(st.sampled_from(paths)))
        op = draw(st.sampled_from(["class", "module", "registered", "attr", "inbound", "nest"]))
        if op == "class":
            target["class_name"] = draw(st.sampled_from(CLASS_NAMES))
        elif op == "module":
            target["module"] = draw(st.sampled_from(MODULES))
        elif op == "registered":
            target["registered_name"] = draw(st.sampled_from(REGISTERED))
        elif op == "attr" and isinstance(target.get("config"), dict):
            key = draw(
                st.sampled_from(
                    ["activation", "kernel_quantizer", "kernel_initializer", "function", "cell"]
                )
            )
            target["config"][key] = draw(st.sampled_from(_hostile_objects(marker)))
        elif op == "inbound" and "inbound_nodes" in target:
            const = draw(st.sampled_from([str(marker), 2.0, [1, 2], {"a": 1}, None]))
            kwargs = draw(st.sampled_from([{}, {"contents": "x"}, {"y": 2.0}]))
            target["inbound_nodes"] = [["_CONSTANT_VALUE", -1, const, kwargs]]
        elif op == "nest" and "inbound_nodes" in target and isinstance(target.get("config"), dict):
            inner = {k: v for k, v in target.items() if k != "inbound_nodes"}
            target["class_name"] = "TimeDistributed"
            target["config"] = {"name": target["config"].get("name", "td"), "layer": inner}
    return config


def _allowed_classes() -> set[type]:
    keras, lq = _tf.keras(), _tf.larq()
    allowed = {getattr(keras.layers, n) for n in KERAS_LAYERS}
    allowed |= {getattr(lq.layers, n) for n in LARQ_LAYERS}
    allowed |= {getattr(lq.quantizers, n) for n in LARQ_QUANTIZERS}
    allowed |= {keras.Model, keras.Sequential, type(hf.base_model())}
    return allowed


def _assert_only_allowlisted(model: Any) -> None:
    keras = _tf.keras()
    allowed = _allowed_classes()
    for obj in [model, *model.submodules]:
        if isinstance(obj, keras.layers.Layer):
            assert type(obj) in allowed, f"{obj.name}: {type(obj)} is not allowlisted"
            for attr in ("activation", "input_quantizer", "kernel_quantizer"):
                fn = getattr(obj, attr, None)
                if fn is None or isinstance(fn, keras.layers.Layer):
                    continue
                module = getattr(fn, "__module__", "") or ""
                assert module.startswith(("tf_keras.", "larq.", "tensorflow.")), (obj.name, fn)
                if attr == "activation":
                    assert fn.__name__ in ACTIVATIONS | {"swish"}, (obj.name, fn)


@pytest.fixture(scope="module")
def real_configs(tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("configs")
    model = hf.base_model()
    model.save(folder / "base.keras")
    model.save(folder / "base.h5")
    return {
        "folder": folder,
        "keras": (folder / "base.keras", hf.keras_config(folder / "base.keras")),
        "h5": (folder / "base.h5", hf.h5_config(folder / "base.h5")),
    }


_counter = itertools.count()


class _Hung(Exception):
    """A load that did not finish: a hostile file that hangs bnnconvert."""


@contextlib.contextmanager
def _time_limit(seconds: int) -> Iterator[None]:
    """Raise :class:`_Hung` in this (main) thread after ``seconds``: a hang fails, not stalls."""

    def expire(signum: int, frame: Any) -> None:
        raise _Hung(f"loading took over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# derandomize: the same 150 mutations on every run, so CI sees what was checked here.
@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_mutated_configs_load_only_allowlisted_objects(real_configs, data) -> None:
    fmt = data.draw(st.sampled_from(["keras", "h5"]))
    base, config = real_configs[fmt]
    n = next(_counter)
    marker = real_configs["folder"] / f"marker{n}"
    mutated = data.draw(mutations(config, marker))
    if fmt == "keras":
        path = hf.rewrite_keras_config(base, real_configs["folder"] / f"m{n}.keras", mutated)
    else:
        path = real_configs["folder"] / f"m{n}.h5"
        shutil.copy(base, path)
        hf.rewrite_h5_config(path, mutated)
    try:
        with _time_limit(60):
            loaded = checkpoint.load(path)
    except BnnConvertError as e:
        assert len(str(e).splitlines()) == 1
        event("refused")
    else:
        _assert_only_allowlisted(loaded.model)
        event("loaded")
    assert not marker.exists(), f"payload ran: {mutated}"
