"""What the service tests compare against: the models an offline run would train, and readers
of what a run committed."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from oml.codecs.state import decode_state, model_from_state
from oml.plugins import Registry, default_registry


def offline(events, algorithm="scw", params=None, registry: Registry | None = None):
    """Each key's model trained on that key's feedback in stream order, as the service must."""
    registry = registry or default_registry()
    features, models = {}, {}
    for e in events:
        if e.label is None:
            features[e.event_id] = e.features
        else:
            model = models.setdefault(e.key, registry.create(algorithm, params or {}))
            model.learn_one(features.pop(e.event_id), e.label)
    return models


def changelog_models(read_all, topic, registry: Registry | None = None):
    latest = {}
    for r in read_all(topic):
        latest[r.key.decode()] = r.value
    return {k: model_from_state(decode_state(v), registry)
            for k, v in latest.items() if v is not None}


def assert_same_models(got, expected):
    assert sorted(got) == sorted(expected)
    for key, model in expected.items():
        assert got[key].export_state() == model.export_state(), key


def predictions_by_event(read_all, topic, codec: Any = None) -> Counter[Any]:
    """How many predictions each event id has (JSON, or decoded by a ``PredictionCodec``)."""
    if codec is not None:
        return Counter(codec.decode(r.value).event_id for r in read_all(topic))
    return Counter(json.loads(r.value)["event_id"] for r in read_all(topic))
