"""bnnconvert: trained Larq BNN checkpoints to bitpacked LCE flatbuffers.

The public API mirrors the command line; each function returns a plain
result object (see the module of each). TensorFlow is imported only when a
function that needs it is called.
"""

from __future__ import annotations

__version__ = "0.1.0"
