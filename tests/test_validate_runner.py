"""validate's interpreter run and its overlap with localization.

Worker processes and the calling process share the samples (each runs
exactly once, outputs equal to one process running them all); a failing
worker names its cause; the localization samples are settled as soon as the
arrived samples decide them, and the localization made while the
interpreter runs is the one reported.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from helpers import BUNDLED, relu_model
from test_validate_faults import plant

from bnnconvert import checkpoint, ir
from bnnconvert.cli.main import run
from bnnconvert.errors import FlatbufferProblem
from bnnconvert.export import export
from bnnconvert.validation.outputs import OutputPair
from bnnconvert.validation.overlap import SamplePlan
from bnnconvert.validation.runner import InterpreterRun

# The module (``bnnconvert.validate`` is also the function, in the package's namespace).
validate_module = importlib.import_module("bnnconvert.validate")


def test_workers_and_this_process_run_each_sample_once():
    flatbuffer = relu_model((1, 4))
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    progress: list[tuple[int, int]] = []
    with InterpreterRun(
        flatbuffer, ir.read(flatbuffer), x, workers=2, progress=lambda *p: progress.append(p)
    ) as run:
        from_workers = run.wait(None)  # blocks until a worker has finished a sample
        here = []
        while (i := run.run_here()) is not None:
            here.append(i)
        (out,) = run.result()
    assert from_workers and not set(from_workers) & set(here)
    np.testing.assert_array_equal(out, np.maximum(x, 0))
    assert progress == [(k, 40) for k in range(1, 41)]


def test_wait_returns_every_sample_a_worker_has_announced():
    """All of them at once, not one per call (a buffered readline() kept the rest back,
    so the comparison, and localization with it, lagged behind the worker)."""
    flatbuffer = relu_model((1, 4))
    x = np.random.default_rng(0).normal(size=(30, 4)).astype(np.float32)
    with InterpreterRun(flatbuffer, ir.read(flatbuffer), x, workers=1) as run:
        assert run.procs[0].wait(timeout=60) == 0  # it ran every sample and exited
        arrived = run.wait(0)
        assert sorted(arrived) == list(range(30)) and run.finished


def test_a_failing_worker_names_the_cause():
    flatbuffer = relu_model((1, 4), opcode="Foo")
    x = np.zeros((10, 4), np.float32)
    run = InterpreterRun(flatbuffer, ir.read(flatbuffer), x, workers=2)
    with pytest.raises(FlatbufferProblem) as info, run:
        run.result(help_here=False)
    assert str(info.value) == (
        "LCE's interpreter failed on the model in a worker process: the model uses custom op "
        "Foo, which LCE's interpreter does not provide; bnnconvert models need only TFLite "
        "builtins and LCE ops; it printed: Encountered unresolved custom op: Foo. / Node "
        "number 0 (Foo) failed to prepare."
    )


def _plan(n: int = 10, *, always: bool = False) -> tuple[SamplePlan, np.ndarray]:
    reference = np.random.default_rng(1).normal(size=(n, 3)).astype(np.float32)
    plan = SamplePlan([OutputPair("y", 0, 0, "name")], n, always=always)
    plan.add_reference([reference])
    return plan, reference


def _arrive(plan: SamplePlan, reference: np.ndarray, i: int, *, wrong: bool = False) -> None:
    plan.add(i, [reference[i : i + 1] + (1.0 if wrong else 0.0)])


def test_the_first_mismatched_sample_is_settled_once_every_earlier_one_is_in():
    plan, reference = _plan()
    _arrive(plan, reference, 3, wrong=True)
    assert plan.needed and plan.pick(1) is None  # samples 0-2 may mismatch too
    for i in (1, 0):
        _arrive(plan, reference, i)
        assert plan.pick(1) is None
    _arrive(plan, reference, 2)
    assert plan.pick(1) == [3]
    assert plan.pick(2) is None  # a second mismatch may come in 4-9
    _arrive(plan, reference, 5, wrong=True)
    assert plan.pick(2) is None  # sample 4 is not in yet
    _arrive(plan, reference, 4)
    assert plan.pick(2) == [3, 5]


def test_a_non_finite_output_is_a_mismatch():
    plan, reference = _plan(12)
    plan.add(7, [np.full((1, 3), np.nan, np.float32)])
    assert plan.mismatched == {7} and plan.needed and plan.pick(1) is None
    for i in range(7):
        _arrive(plan, reference, i)
    assert plan.pick(1) == [7]


def test_flatbuffer_samples_wait_for_their_reference_batch():
    reference = np.random.default_rng(1).normal(size=(8, 3)).astype(np.float32)
    plan = SamplePlan([OutputPair("y", 0, 0, "name")], 8, always=False)
    plan.add(5, [reference[5:6] + 1.0])
    plan.add(0, [reference[0:1]])
    assert plan.compared == set() and not plan.needed
    plan.add_reference([reference[:4]])
    assert plan.compared == {0} and not plan.needed
    plan.add_reference([reference[4:]])
    assert plan.compared == {0, 5} and plan.mismatched == {5}
    np.testing.assert_array_equal(plan.reference_outputs()[0], reference)


def test_with_layers_asked_and_no_mismatch_the_first_samples_are_picked_at_the_end():
    plan, reference = _plan(6, always=True)
    for i in range(5):
        _arrive(plan, reference, i)
        assert plan.pick(4) is None
    _arrive(plan, reference, 5)
    assert plan.pick(4) == [0, 1, 2, 3]


@pytest.mark.parametrize("workers", [0, 1])
def test_the_localization_made_while_interpreting_is_the_one_reported(
    workers, tmp_path, monkeypatch
):
    export(BUNDLED, output_dir=tmp_path / "out", validate_samples=0)
    path = tmp_path / "planted.tflite"
    path.write_bytes(plant((tmp_path / "out" / "model.tflite").read_bytes(), "filter",
                           "block2_layer2_bconv"))  # fmt: skip
    picks: list[list[int]] = []
    isolate = validate_module._isolate

    def counted(*args, **kwargs):
        picks.append(list(args[3]))
        return isolate(*args, **kwargs)

    monkeypatch.setattr(validate_module, "_isolate", counted)
    model = checkpoint.load(BUNDLED).model
    result = validate_module.validate(BUNDLED, path, keras_model=model, samples=24, workers=workers)
    assert not result.passed
    assert result.first_divergence.keras_layer == "block2_layer2_bconv"
    mismatched = sorted({i for o in result.outputs for i in o.mismatched})
    assert picks == [mismatched[: len(picks[0])]]  # one localization, on the first mismatches


def test_a_fault_that_shows_in_few_samples_fails(tmp_path):
    """One threshold moved a little: 3 of 359 samples differ, and that is not excused.

    (A 1 % allowance used to pass it.)
    """
    export(BUNDLED, output_dir=tmp_path / "out", validate_samples=0)
    model = ir.read((tmp_path / "out" / "model.tflite").read_bytes())
    graph = model.subgraphs[0]
    op = graph.operators[41]
    thresholds = ir.tensor_array(model, graph, op.inputs[1]).copy()
    thresholds[98] += 0.1
    ir.set_tensor_array(model, graph, op.inputs[1], thresholds)
    path = tmp_path / "planted.tflite"
    path.write_bytes(ir.write(model))
    with np.load(BUNDLED / "test_split.npz") as split:
        x, y = split["x"], split["y"]
    first = validate_module.validate(BUNDLED, path, use_cache=False).outputs[0].mismatched
    keep = np.arange(len(x)) != first[0]
    np.savez(tmp_path / "fewer.npz", x=x[keep], y=y[keep])
    result = validate_module.validate(BUNDLED, path, data=tmp_path / "fewer.npz", use_cache=False)
    assert (op.opcode, len(first), result.samples) == ("ADD", 4, 359)
    assert (result.verdict, result.samples_within_tolerance) == ("fail", 356 / 359)
    assert result.first_divergence.keras_layer == "block3_layer3_bn"


def test_export_says_why_it_checked_random_inputs(tmp_path, capsys):
    """A test split export cannot use (NaN in a sample) is named, and the check says random."""
    ckpt = tmp_path / "digits"
    ckpt.mkdir()
    (ckpt / "model.keras").write_bytes((BUNDLED / "model.keras").read_bytes())
    with np.load(BUNDLED / "test_split.npz") as split:
        x, y = split["x"][:20].copy(), split["y"][:20]
    x[2, 0, 0, 0] = np.nan
    np.savez(ckpt / "test_split.npz", x=x, y=y)
    assert run(["export", str(ckpt), "-o", str(tmp_path / "out")]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "parity:" in line]
    assert lines[0].startswith("  parity: pass: 8 samples (random inputs), ")
    assert lines[1] == (
        f"  parity: test split not used: {ckpt / 'test_split.npz'}: x holds NaN in 1 of 8 "
        "samples (index 2)"
    )
