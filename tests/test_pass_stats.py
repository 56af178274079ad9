"""Pass statistics count what a pass changed, never differences of re-serialization."""

from __future__ import annotations

import itertools

from bnnconvert import ir
from bnnconvert.passes import OptimizeOptions, optimize

FOLD_ONLY = OptimizeOptions(cleanup=False)
CLEANUP_ONLY = OptimizeOptions(fold_sign_scale=False)


def test_a_pass_that_rewrites_nothing_reports_zero(tiny_bnn_tflite):
    folded, _ = optimize(tiny_bnn_tflite, OptimizeOptions())
    # Nothing left to fold or clean: LCE's bytes and ours differ in layout,
    # which must not be credited to either pass.
    assert len(ir.write(ir.read(folded))) == len(folded)
    again, stats = optimize(folded, OptimizeOptions())
    assert again == folded
    for s in stats:
        assert (s.rewrites, s.ops_removed, s.ops_added, s.bytes_saved) == (0, 0, 0, 0), s.name
        assert s.bytes_before == s.bytes_after == len(folded)


def test_with_and_without_an_idle_pass_the_files_and_the_credit_agree(tiny_bnn_tflite):
    folded, _ = optimize(tiny_bnn_tflite, FOLD_ONLY)
    lce_layout = ir.write(ir.read(folded))
    with_fold, stats = optimize(folded, OptimizeOptions())
    without_fold, cleanup_alone = optimize(folded, CLEANUP_ONLY)
    assert with_fold == without_fold
    fold, cleanup = stats
    assert fold.bytes_saved == 0
    assert cleanup.bytes_saved == cleanup_alone[0].bytes_saved
    assert cleanup.bytes_before == len(lce_layout)


def test_sizes_chain_from_pass_to_pass_and_end_at_the_output(tiny_bnn_tflite):
    out, stats = optimize(tiny_bnn_tflite, OptimizeOptions(float_weights="fp16"))
    assert [s.name for s in stats] == ["fold_sign_scale", "float_weights_fp16", "cleanup"]
    assert stats[0].bytes_before == len(ir.write(ir.read(tiny_bnn_tflite)))
    for earlier, later in itertools.pairwise(stats):
        assert later.bytes_before == earlier.bytes_after
    assert stats[-1].bytes_after == len(out)
    # fold and fp16 are credited with the constants they made dead; cleanup,
    # with nothing of its own to remove or share, with nothing.
    assert [s.bytes_saved > 0 for s in stats] == [True, True, False]
    assert (stats[2].rewrites, stats[2].bytes_saved) == (0, 0)
    assert sum(s.bytes_saved for s in stats) == stats[0].bytes_before - len(out) > 0


def test_fold_is_credited_with_its_net_change_and_cleanup_with_nothing(tiny_bnn_tflite):
    ours = len(ir.write(ir.read(tiny_bnn_tflite)))
    out, (fold, cleanup) = optimize(tiny_bnn_tflite, OptimizeOptions())
    assert fold.rewrites > 0
    # New thresholds minus the scale/bias constants they replaced: all of the change.
    assert (fold.bytes_before, fold.bytes_after) == (ours, len(out))
    assert fold.bytes_saved > 0
    assert (cleanup.rewrites, cleanup.bytes_before, cleanup.bytes_after) == (0, len(out), len(out))
    # Without cleanup the file keeps the dead constants, but fold's credit is the same.
    kept, (fold_alone,) = optimize(tiny_bnn_tflite, FOLD_ONLY)
    assert len(kept) > len(out)
    assert (fold_alone.bytes_before, fold_alone.bytes_after) == (ours, len(out))


def test_cleanup_is_credited_with_dead_code_it_found_also_after_fold(tiny_bnn_tflite):
    from test_passes_cleanup import _with_dead_and_duplicate

    messy = _with_dead_and_duplicate(tiny_bnn_tflite)
    _, (fold_on_stock, _) = optimize(tiny_bnn_tflite, OptimizeOptions())
    out, (fold, cleanup) = optimize(messy, OptimizeOptions())
    _, (cleanup_alone,) = optimize(messy, CLEANUP_ONLY)
    assert fold.bytes_saved == fold_on_stock.bytes_saved
    assert cleanup.bytes_saved == cleanup_alone.bytes_saved > 0
    assert (fold.bytes_before, cleanup.bytes_after) == (len(messy), len(out))


def test_no_pass_returns_the_input_unchanged(tiny_bnn_tflite):
    out, stats = optimize(tiny_bnn_tflite, OptimizeOptions().with_raw_output())
    assert (out, stats) == (bytes(tiny_bnn_tflite), [])
