"""Localizing while LCE's interpreter still runs: which samples, decided as early as possible.

``validate`` checks layers in isolation on the first few samples whose
outputs mismatch (or on the first samples, when it checks layers anyway).
The interpreter's samples arrive one by one, in about index order
(:class:`~bnnconvert.validation.runner.InterpreterRun`), so that choice is
often settled long before the last sample: once ``count`` mismatches are in
and every sample before the last of them is too, no later sample can change
it. :class:`SamplePlan` follows the arrivals and says when localization is
certain to be needed and on which samples; ``validate`` then loads the
model and localizes on the free core while the workers finish, and uses the
result only if the final outputs choose the same samples.
"""

from __future__ import annotations

import math

import numpy as np

from bnnconvert.validation.outputs import MISMATCH_ALLOWED, OutputPair, within_tolerance


class SamplePlan:
    """Per-sample agreement as samples arrive, and the localization samples once settled.

    Arguments:
        pairs: the paired outputs (:func:`~bnnconvert.validation.outputs.pair_outputs`).
        reference_outputs: the reference's outputs, one ``(N, *shape)`` array per Keras output.
        always: localization runs whatever the outputs say (``--layers``, a lossy export).
    """

    def __init__(
        self, pairs: list[OutputPair], reference_outputs: list[np.ndarray], *, always: bool
    ) -> None:
        self.pairs, self.reference = pairs, reference_outputs
        self.n = len(reference_outputs[0]) if reference_outputs else 0
        self.always = always
        # More mismatched samples than this fail a lossless export (outputs.compare_output).
        self.allowed = math.floor(MISMATCH_ALLOWED * self.n)
        self.arrived: set[int] = set()
        self.mismatched: set[int] = set()

    def add(self, i: int, fb_outputs: list[np.ndarray]) -> None:
        """Record sample ``i``'s flatbuffer outputs (``(1, *shape)`` each, graph order)."""
        self.arrived.add(i)
        for p in self.pairs:
            keras = self.reference[p.keras_index][i : i + 1]
            ours = fb_outputs[p.flatbuffer_index]
            finite = bool(np.all(np.isfinite(ours)))
            if not finite or not within_tolerance(keras, ours.reshape(keras.shape))[0]:
                self.mismatched.add(i)

    @property
    def needed(self) -> bool:
        """Whether localization will run whatever the remaining samples give."""
        return self.always or len(self.mismatched) > self.allowed

    def pick(self, count: int) -> list[int] | None:
        """The samples to localize on (as ``validate`` chooses them), or None while unsettled.

        The first ``count`` mismatched samples, or the first ``count`` samples when
        none mismatch.
        """
        if not self.needed:
            return None
        first = sorted(self.mismatched)[:count]
        if len(first) == count and self.arrived.issuperset(range(first[-1] + 1)):
            return first
        if len(self.arrived) == self.n:
            return first or list(range(min(count, self.n)))
        return None
