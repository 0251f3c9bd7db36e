"""Bytes in and out: input events, prediction and metrics records, model state.

``events`` decodes the input a batch at a time into columns and encodes events for producers;
``outputs`` encodes predictions and metrics (``records`` holds those records and what their two
codecs share); ``avro`` and ``schema_registry`` hold the shipped Avro schemas and the Confluent
Schema Registry wire format; ``state`` encodes model state.  Codecs are
objects built once (from the configuration); bad input comes back as a value
(:class:`BadMessage`) from a batch decoder, or as a :class:`CodecError` carrying the raw bytes
and a reason from a single-record one.

The heavier classes are imported on first use, so ``import oml`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from oml.codecs.errors import REASONS, BadMessage, CodecError

if TYPE_CHECKING:
    from oml.codecs.events import (
        DecodedBatch,
        Event,
        EventDecoder,
        EventEncoder,
        event_decoder,
    )
    from oml.codecs.outputs import (
        Metrics,
        MetricsCodec,
        OutputCodecs,
        Prediction,
        PredictionCodec,
    )

_LAZY = {
    "DecodedBatch": "oml.codecs.events",
    "Event": "oml.codecs.events",
    "EventDecoder": "oml.codecs.events",
    "EventEncoder": "oml.codecs.events",
    "event_decoder": "oml.codecs.events",
    "Metrics": "oml.codecs.outputs",
    "MetricsCodec": "oml.codecs.outputs",
    "OutputCodecs": "oml.codecs.outputs",
    "Prediction": "oml.codecs.outputs",
    "PredictionCodec": "oml.codecs.outputs",
}

__all__ = [
    "REASONS",
    "BadMessage",
    "CodecError",
    "DecodedBatch",
    "Event",
    "EventDecoder",
    "EventEncoder",
    "Metrics",
    "MetricsCodec",
    "OutputCodecs",
    "Prediction",
    "PredictionCodec",
    "event_decoder",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'oml.codecs' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
