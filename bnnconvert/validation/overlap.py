"""Localizing while both sides still run: which samples, decided as early as possible.

``validate`` checks layers in isolation on the first few samples whose
outputs mismatch (or on the first samples, when it checks layers anyway).
The interpreter's samples arrive one by one, in about index order
(:class:`~bnnconvert.validation.runner.InterpreterRun`), and Keras's in
batches, so that choice is often settled long before the last sample: once
``count`` mismatches are in and every sample before the last of them is
too, no later sample can change it. :class:`SamplePlan` follows the arrivals
and says when localization is certain to be needed and on which samples;
``validate`` then loads the model (if the Keras outputs came from the cache)
and localizes while the interpreter workers go on, and uses the result only
if the final outputs choose the same samples.
"""

from __future__ import annotations

import math

import numpy as np

from bnnconvert.validation.outputs import MISMATCH_ALLOWED, OutputPair, within_tolerance


class SamplePlan:
    """Per-sample agreement as both sides' samples arrive, and the localization samples.

    The reference's outputs come in batches, in sample order
    (:meth:`add_reference`); the flatbuffer's one sample at a time, in any
    order (:meth:`add`). A sample is compared once both are in.

    Arguments:
        pairs: the paired outputs (:func:`~bnnconvert.validation.outputs.pair_outputs`).
        n: the number of samples.
        always: localization runs whatever the outputs say (``--layers``, a lossy export).
    """

    def __init__(self, pairs: list[OutputPair], n: int, *, always: bool) -> None:
        self.pairs, self.n, self.always = pairs, n, always
        # More mismatched samples than this fail a lossless export (outputs.compare_output).
        self.allowed = math.floor(MISMATCH_ALLOWED * n)
        self.batches: list[list[np.ndarray]] = []
        self.ready = 0  # samples with reference outputs
        self.waiting: dict[int, list[np.ndarray]] = {}  # flatbuffer outputs not compared yet
        self.compared: set[int] = set()
        self.mismatched: set[int] = set()

    def add_reference(self, outputs: list[np.ndarray]) -> None:
        """Record the reference's outputs of the next samples (one ``(B, *shape)`` per output)."""
        self.batches.append(outputs)
        self.ready += len(outputs[0]) if outputs else 0
        for i in [i for i in self.waiting if i < self.ready]:
            self._compare(i, self.waiting.pop(i))

    def add(self, i: int, fb_outputs: list[np.ndarray]) -> None:
        """Record sample ``i``'s flatbuffer outputs (``(1, *shape)`` each, graph order)."""
        if i < self.ready:
            self._compare(i, fb_outputs)
        else:
            self.waiting[i] = fb_outputs

    def reference_outputs(self) -> list[np.ndarray]:
        """The reference's outputs so far, one ``(ready, *shape)`` array per output."""
        return [np.concatenate(column) for column in zip(*self.batches, strict=True)]

    def _compare(self, i: int, fb_outputs: list[np.ndarray]) -> None:
        self.compared.add(i)
        batch, row = self._locate(i)
        for p in self.pairs:
            keras = batch[p.keras_index][row : row + 1]
            ours = fb_outputs[p.flatbuffer_index]
            finite = bool(np.all(np.isfinite(ours)))
            if not finite or not within_tolerance(keras, ours.reshape(keras.shape))[0]:
                self.mismatched.add(i)

    def _locate(self, i: int) -> tuple[list[np.ndarray], int]:
        """The batch holding sample ``i``'s reference outputs, and its row there."""
        for batch in self.batches:
            size = len(batch[0])
            if i < size:
                return batch, i
            i -= size
        raise IndexError(i)

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
        if len(first) == count and self.compared.issuperset(range(first[-1] + 1)):
            return first
        if len(self.compared) == self.n:
            return first or list(range(min(count, self.n)))
        return None
