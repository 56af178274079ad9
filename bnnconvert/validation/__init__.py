"""The parts of ``validate`` (:mod:`bnnconvert.validate` is the entry point).

- :mod:`~bnnconvert.validation.data`: the inputs (test split, ``.npz``, images, photographs);
- :mod:`~bnnconvert.validation.runner`: Keras in this process, LCE's interpreter in workers;
- :mod:`~bnnconvert.validation.outputs`: every output paired by name and shape, and judged;
- :mod:`~bnnconvert.validation.identity`: was the flatbuffer exported from this checkpoint?
- :mod:`~bnnconvert.validation.localize`: each layer checked in isolation;
- :mod:`~bnnconvert.validation.cache`: Keras outputs cached per (checkpoint, data).
"""
