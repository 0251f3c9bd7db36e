"""oml: online learning over Kafka, one model per key.

The public pieces a library user needs are re-exported here: the model-state codec and the
learner registry.  The service itself is run with the ``oml`` command.
"""

from __future__ import annotations

from oml.codecs.state import decode_model, encode_model
from oml.learner import InvalidInput, ModelState, StateError
from oml.plugins import default_registry, load_registry

__all__ = [
    "InvalidInput",
    "ModelState",
    "StateError",
    "decode_model",
    "default_registry",
    "encode_model",
    "load_registry",
]
