"""The batch loop without a broker: feedback paired inside a batch gives exactly the results of
going through the feature cache, whatever the batch holds (re-sent ids, duplicate or early
feedback, mismatched keys, replayed input, labels a model refuses)."""

from __future__ import annotations

import json
from collections import defaultdict
from itertools import pairwise
from typing import Any

import numpy as np
from confluent_kafka import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oml.codecs.events import Event, EventEncoder
from oml.config import load_config
from oml.processing import pair_in_batch
from oml.service import Service
from oml.state.cache import SLOT


class RecordingProducer:
    """What the service produces, by topic (the service's producer in a run)."""

    def __init__(self) -> None:
        self.records: dict[str, list[tuple[Any, Any, Any]]] = defaultdict(list)

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        self.records[topic].append((key, value, kw.get("headers")))

    def poll(self, timeout: float = 0) -> int:
        return 0


def _service(algorithm: str, paired: bool) -> Service:
    config = load_config(None, {}, {"kafka.bootstrap_servers": "127.0.0.1:1",
                                    "model.algorithm": algorithm})
    service = Service(config)
    service.producer = RecordingProducer()  # type: ignore[assignment]
    if not paired:  # every feedback through the cache
        service.processor.pairing = None
    return service


def _messages(ops: list[tuple[Any, ...]]) -> list[Message]:
    encoder = EventEncoder()
    offsets = [0, 0]
    out = []
    for t, (kind, eid, key, x, label) in enumerate(ops):
        features = None if x is None else {"a": x, "b": 1.0 - x}
        event = Event(f"e{eid}", f"k{key}", features, label if kind == "f" else None, 1000 + t)
        partition = key % 2
        out.append(Message(topic="in", partition=partition, offset=offsets[partition],
                           key=event.key.encode(), value=encoder(event), timestamp=(1, 1000 + t)))
        offsets[partition] += 1
    return out


def _by_key(records: list[tuple[Any, Any, Any]], drop: tuple[str, ...] = ()) -> dict:
    out: dict[Any, list[Any]] = defaultdict(list)
    for key, value, headers in records:
        if drop:
            value = {k: v for k, v in json.loads(value).items() if k not in drop}
        if headers:  # all but the dead letter's own time
            headers = [(h, v) for h, v in headers if h != "oml.dlq.timestamp"]
        out[key].append((value, headers))
    return dict(out)


def _cache(service: Service) -> list[tuple[str, tuple[Any, ...], list[float]]]:
    cache = service.cache
    width = len(service.models.bank.features)
    return [
        (eid, entry[:SLOT] + entry[SLOT + 1:], cache.features[entry[SLOT], :width].tolist())
        for eid, entry in cache.entries.items()
    ]


def _state(service: Service) -> dict[str, Any]:
    m = service.models
    keys = sorted(m.rows)
    return {
        "models": {k: m.export(k) for k in keys},
        "summary": (service.summary.predictions, service.summary.learned,
                    service.summary.duplicates, service.summary.cache_misses,
                    dict(service.summary.dead_letters)),
        "predictions": _by_key(service.producer.records["predictions"],
                               drop=("processed_timestamp",)),
        "dead letters": _by_key(service.producer.records[service.topics.dead_letter]),
        "cache": _cache(service),
        "changelog": sorted(service.cache.take_changes(service.models.bank.features),
                            key=lambda r: (r[0], r[1])),
    }


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Mostly what a real stream holds (fresh events, feedback for pending ones, of their key,
    some later), with the odd anomaly: a re-sent id, feedback for an unknown or already labeled
    event, feedback naming another key, a third class."""
    ops: list[tuple[Any, ...]] = []
    pending: list[tuple[int, int]] = []  # (id, key) awaiting feedback
    done: list[tuple[int, int]] = []
    for _ in range(draw(st.integers(1, 50))):
        what = draw(st.sampled_from(["new"] * 5 + ["label"] * 4 + ["odd"]))
        x = draw(st.floats(-3, 3))
        label = draw(st.sampled_from([True, False, True, False, "other"]))
        if what == "label" and pending:
            eid, key = pending.pop(draw(st.integers(0, len(pending) - 1)))
            done.append((eid, key))
            ops.append(("f", eid, key, draw(st.none() | st.just(x)), label))
        elif what == "odd" and (pending or done):
            eid, key = draw(st.sampled_from(pending + done))
            kind = draw(st.sampled_from(["resend", "again", "other key"]))
            if kind == "resend":
                ops.append(("u", eid, key, x, None))
            else:
                key = (key + 1) % 4 if kind == "other key" else key
                ops.append(("f", eid, key, draw(st.none() | st.just(x)), label))
        else:
            eid, key = len(ops) + 100, draw(st.integers(0, 3))
            pending.append((eid, key))
            ops.append(("u", eid, key, x, None))
    return ops


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=streams(), cuts=st.lists(st.integers(1, 50), max_size=4), replay=st.integers(0, 20),
       algorithm=st.sampled_from(["pa", "scw"]))
def test_pairing_in_the_batch_gives_the_results_of_the_cache(ops, cuts, replay, algorithm):
    _same_results(ops, cuts, replay, algorithm)


def test_feedback_before_its_re_sent_event_in_a_batch_is_not_paired():
    ops = [("u", 1, 0, 0.5, None), ("f", 1, 0, None, True),  # one batch, resolved
           ("f", 1, 0, None, False), ("u", 1, 0, -1.0, None), ("f", 1, 0, None, False)]
    _same_results(ops, [2], 0, "pa")


def _same_results(ops: list[tuple[Any, ...]], cuts: list[int], replay: int, algorithm: str):
    messages = _messages(ops)
    bounds = sorted({0, len(messages), *(c for c in cuts if c < len(messages))})
    batches = [messages[a:b] for a, b in pairwise(bounds)]
    if replay:  # input read again (a restart at-least-once): its updates are in the state
        batches.append(messages[-replay:])
    states = []
    for paired in (True, False):
        service = _service(algorithm, paired)
        for batch in batches:
            service.process(batch)
        states.append(_state(service))
    paired_state, cached_state = states
    for part in cached_state:
        assert paired_state[part] == cached_state[part], part


def test_a_plain_batch_pairs_and_caches_only_what_is_unresolved():
    ops = [("u", i, i % 3, 0.5 * i, None) for i in range(6)]
    ops += [("f", i, i % 3, None, i % 2 == 0) for i in range(4)]
    service = _service("pa", paired=True)
    seen = []

    def spy(batch, rows, cache):
        seen.append(pair_in_batch(batch, rows, cache))
        return seen[-1]

    service.processor.pairing = spy
    service.process(_messages(ops))
    (found,) = seen
    assert found is not None and found.resolved.sum() == 4
    assert sorted(service.cache.entries) == ["e4", "e5"]  # the two events still unlabeled
    hits = service.metrics.registry.get_sample_value("oml_feature_cache_hits_total")
    assert service.summary.learned == 4 and hits == 4
    assert np.array_equal(found.partner[6:], np.arange(4))
