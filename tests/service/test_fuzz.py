"""A fuzz test of the whole service on a real broker: hypothesis mixes hundreds of hostile
messages of every kind into a valid stream, in JSON and in Avro.  The service must not stop;
every hostile message must be in the dead-letter topic exactly once, found by its source
partition and offset; every valid event must be predicted once; and the models must be those
of the valid stream alone."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from confluent_kafka import Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from service_helpers import assert_same_models, changelog_models, offline, predictions_by_event

from oml.codecs.events import Event, EventEncoder
from oml.codecs.outputs import PredictionCodec
from oml.kafka.deadletter import (
    HEADER_ERROR,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
)
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]

N_KEYS, WIDTH, FUTURE = 8, 4, 253402300799000  # 9999-12-31T23:59:59Z


def valid_stream(n: int) -> list[Event]:
    events: list[Event] = []
    for i in range(n):
        x = [float((i * 7 + j) % 5) - 2.0 for j in range(WIDTH)]
        key = f"k{i % N_KEYS}"
        events.append(Event(f"v{i}", key, x))
        events.append(Event(f"v{i}", key, None, sum(x) > 0))
    return events


def _json(body: object) -> bytes:
    return json.dumps(body, allow_nan=True).encode()


printable = st.text(st.characters(codec="ascii", categories=("L", "N")), min_size=1, max_size=8)
JSON_HOSTILE = st.one_of(
    st.binary(max_size=64),  # random bytes
    st.builds(lambda s: b'{"event_id": "h\xff' + s + b'", "key": "k0", "features": [1]}',
              st.binary(max_size=8)),  # invalid UTF-8
    st.builds(lambda cut: _json({"event_id": "h-cut", "key": "k1",
                                 "features": [1.0, 2.0, 3.0, 4.0]})[:cut],
              st.integers(1, 40)),  # truncated JSON
    st.builds(lambda depth: b'{"event_id":"h","key":"k2","features":[1,2,3,'
              + b"[" * depth + b"]" * depth + b"]}", st.integers(10, 3000)),  # deep nesting
    st.builds(lambda bad: b'{"event_id": "h-nan", "key": "k3", "features": [1.0, '
              + bad + b", 0, 0]}",
              st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"])),
    st.builds(lambda wrong: _json({"event_id": "h-type", "key": "k4",
                                   "features": [1.0, 2.0, 3.0, 4.0], **wrong}),
              st.sampled_from([{"event_id": [1, 2]}, {"event_id": {"a": 1}},
                               {"features": "1,2,3,4"}, {"features": {"a": "b"}},
                               {"features": [[1.0], 2.0, 3.0, 4.0]}, {"label": [1, 2]},
                               {"label": {"a": True}}, {"timestamp": "yesterday"},
                               {"timestamp": [1, 2]}, {"key": [4, 2]}])),  # wrong types
    st.builds(lambda n: _json({"event_id": "h" * n, "key": "k5",
                               "features": [1.0, 2.0, 3.0, 4.0]}), st.integers(300, 20_000)),
    st.builds(lambda n: _json({"event_id": "v0", "key": "k0", "label": "L" * n}),
              st.integers(300, 5_000)),  # a label far too long
    st.builds(lambda eid: _json({"event_id": f"h-future-{eid}", "key": "k6", "timestamp": FUTURE,
                                 "features": [1.0, 2.0, 3.0, 4.0]}), printable),
    st.builds(lambda n: _json({"event_id": "h-wide", "key": "k7",
                               "features": {f"f{i}": 1.0 for i in range(n)}}),
              st.integers(1_001, 1_500)),  # more features than model.max_features
    st.builds(lambda n: _json({"event_id": "h-width", "key": "k0", "features": [1.0] * n}),
              st.sampled_from([1, 3, 5, 9])),  # a list of the wrong length
    st.builds(lambda eid: _json({"event_id": f"h-nobody-{eid}", "key": "k1", "label": True}),
              printable),  # feedback for an event never seen
    st.just(_json({"key": "k2", "features": [1.0, 2.0, 3.0, 4.0]})),  # no event id
)


def avro_hostile(encoder: EventEncoder) -> st.SearchStrategy[bytes]:
    whole = encoder(Event("h-avro", "k0", [1.0, 2.0, 3.0, 4.0]))
    return st.one_of(
        st.binary(max_size=64),
        st.builds(lambda cut: whole[:cut], st.integers(0, len(whole) - 1)),  # truncated Avro
        st.builds(lambda tail: whole + tail, st.binary(min_size=1, max_size=8)),  # extra bytes
        st.just(_json({"event_id": "h", "key": "k1", "features": [1.0]})),  # the wrong format
    )


def run_mixed(setup, kafka_config, read_all, fmt: str, hostile: list[bytes], where: list[int]):
    config = setup()(**{"model.algorithm": "pa", "messages.format": fmt, "model.n_features": WIDTH,
                      "processing.batch_size": 500})
    encoder = EventEncoder.from_config(config)
    events = valid_stream(60)
    good = [(e.key.encode(), encoder(e)) for e in events]
    mixed = list(good)
    for value, at in sorted(zip(hostile, where, strict=True), key=lambda p: -p[1]):
        mixed.insert(at % (len(mixed) + 1), (f"k{at % N_KEYS}".encode(), value))
    producer = Producer({**kafka_config, "linger.ms": 5, "partitioner": "murmur2_random"})
    for key, value in mixed:
        producer.produce(config.topics.input, value=value, key=key)
    assert producer.flush(30) == 0

    summary = Service(config).run()  # returns: the service never stopped on its own

    valid_values = {v for _, v in good}
    bad = {(r.partition, r.offset): r.value for r in read_all(config.topics.input)
           if r.value not in valid_values}
    letters = read_all(config.topics.dead_letter)
    got = Counter((int(d.header(HEADER_SOURCE_PARTITION)), int(d.header(HEADER_SOURCE_OFFSET)))
                  for d in letters)
    missing = [bad[c][:120] for c in bad if c not in got]
    assert not missing, f"{len(missing)} hostile messages not dead-lettered: {missing[:5]}"
    assert got == Counter(dict.fromkeys(bad, 1))  # each hostile message once, nothing else
    assert all(d.header(HEADER_REASON) and d.header(HEADER_ERROR) for d in letters)
    assert summary.aborts == 0 and sum(summary.dead_letters.values()) == len(hostile)
    codec = PredictionCodec.from_config(config)
    predicted = predictions_by_event(read_all, config.topics.predictions, codec)
    assert predicted == Counter({e.event_id: 1 for e in events if e.label is None})
    named = [Event(e.event_id, e.key, e.features and dict(zip(map(str, range(WIDTH)), e.features)),
                   e.label) for e in events]  # list features are named by position
    assert_same_models(changelog_models(read_all, config.topics.models), offline(named, "pa"))


# Three fixed examples each (no shrinking: a failure prints its example as drawn, and the run
# stays within a minute).
SETTINGS = settings(max_examples=3, deadline=None, derandomize=True,
                    phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(data=st.data())
def test_json_fuzz(fresh_setup, kafka_config, read_all, data):
    hostile = data.draw(st.lists(JSON_HOSTILE, min_size=100, max_size=400))
    where = data.draw(st.lists(st.integers(0, 10_000), min_size=len(hostile),
                               max_size=len(hostile)))
    run_mixed(fresh_setup, kafka_config, read_all, "json", hostile, where)


@SETTINGS
@given(data=st.data())
def test_avro_fuzz(fresh_setup, kafka_config, read_all, data):
    config = fresh_setup()(**{"messages.format": "avro"})
    hostile = data.draw(st.lists(avro_hostile(EventEncoder.from_config(config)), min_size=100,
                                 max_size=400))
    where = data.draw(st.lists(st.integers(0, 10_000), min_size=len(hostile),
                               max_size=len(hostile)))
    run_mixed(fresh_setup, kafka_config, read_all, "avro", hostile, where)
