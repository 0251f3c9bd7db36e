"""Hostile input on a real broker: what one message does must stay with that message.  An
outsized record is set aside (cut to fit the dead-letter topic), a timestamp from the far future
cannot expire the feature cache, and input headers travel to the predictions unchanged."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from oml.kafka.deadletter import (
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_TRUNCATED,
)
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def event(i: int, key: str = "k", ts: int | None = None, **extra: object) -> bytes:
    body = {"event_id": f"e{i}", "key": key, "features": [float(i % 3), 1.0], **extra}
    if ts is not None:
        body["timestamp"] = ts
    return json.dumps(body).encode()


def feedback(i: int, key: str = "k") -> bytes:
    return json.dumps({"event_id": f"e{i}", "key": key, "label": i % 2 == 0}).encode()


def send(kafka_config, topic, values, headers=None, **settings):
    producer = Producer({**kafka_config, "linger.ms": 5, **settings})
    for value in values:
        producer.produce(topic, value=value, key=b"k", partition=0, headers=headers)
    assert producer.flush(30) == 0


def test_an_outsized_record_is_dead_lettered_cut_to_fit_and_the_stream_goes_on(
    setup, kafka_config, read_all
):
    config = setup(**{"model.algorithm": "pa"})
    Service(config).run()  # creates the topics
    huge = event(0, extra="x" * 1_200_000)[:-1]  # and cut short: not JSON
    send(kafka_config, config.topics.input, [huge], **{"message.max.bytes": 2_000_000})
    send(kafka_config, config.topics.input, [event(1), feedback(1)])

    summary = Service(config).run()

    (letter,) = read_all(config.topics.dead_letter)
    assert (letter.header(HEADER_SOURCE_PARTITION), letter.header(HEADER_SOURCE_OFFSET)) == (
        "0", "0")
    assert letter.header(HEADER_TRUNCATED) == str(len(huge))
    assert huge.startswith(letter.value) and 1_000_000 < len(letter.value) < 1_048_588
    assert summary.learned == 1 and summary.predictions == 1


def test_a_far_future_timestamp_does_not_expire_the_cache(setup, kafka_config, read_all):
    config = setup(**{"model.algorithm": "pa", "cache.ttl_s": 120,
                      "processing.commit_interval_ms": 100})
    now = int(time.time() * 1000)
    early = [event(i, ts=now) for i in range(50)]
    liar = [event(99, ts=253402300799000)]  # 9999-12-31T23:59:59Z
    late = [feedback(i) for i in range(50)]
    Service(config).run()
    send(kafka_config, config.topics.input, early + liar)
    Service(config).run()  # commits, with the liar's clock, before the feedback arrives
    send(kafka_config, config.topics.input, late)

    summary = Service(config).run()

    assert summary.learned == 50 and not summary.dead_letters
    assert not [r for r in read_all(config.topics.dead_letter)
                if r.header(HEADER_REASON) == "unknown_event"]


def test_input_headers_are_carried_to_the_predictions(setup, kafka_config, read_all):
    config = setup(**{"model.algorithm": "pa"})
    Service(config).run()
    trace = [("traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
             ("tenant", b"acme")]
    send(kafka_config, config.topics.input, [event(1)], headers=trace)
    send(kafka_config, config.topics.input, [event(2)])

    Service(config).run()

    records = read_all(config.topics.predictions)
    by_id = {json.loads(r.value)["event_id"]: r.headers for r in records}
    assert by_id["e1"] == trace and by_id["e2"] == []


def test_a_wide_first_list_after_a_restart_cannot_pin_the_feature_count(setup, kafka_config,
                                                                        read_all):
    config = setup(**{"model.algorithm": "pa"})
    Service(config).run()
    send(kafka_config, config.topics.input, [event(1), feedback(1)])  # 2 list features
    Service(config).run()
    wide = [json.dumps({"event_id": f"w{i}", "key": "k", "features": [1.0, 2.0, 3.0]}).encode()
            for i in range(5)]
    send(kafka_config, config.topics.input, wide)  # alone in the first batch after the restart
    Service(config).run()
    send(kafka_config, config.topics.input, [event(2), feedback(2)])

    summary = Service(config).run()

    reasons = [r.header(HEADER_REASON) for r in read_all(config.topics.dead_letter)]
    assert reasons == ["wrong_feature_count"] * 5  # the width came back with the models
    assert summary.learned == 1 and not summary.dead_letters


def test_poison_pills_and_feature_explosions_are_set_aside(setup, kafka_config, read_all):
    config = setup(**{"model.algorithm": "pa"})
    Service(config).run()
    nested = (b'{"event_id":"x","key":"k","features":[1,2],"extra":' + b"[" * 1000
              + b"]" * 1000 + b"}")
    explosion = json.dumps({"event_id": "boom", "key": "k",
                            "features": {f"f{i}": 1.0 for i in range(5000)}}).encode()
    send(kafka_config, config.topics.input,
         [nested, explosion, event(1), feedback(1), nested])

    summary = Service(config).run()

    letters = read_all(config.topics.dead_letter)
    assert [(d.header(HEADER_SOURCE_OFFSET), d.header(HEADER_REASON)) for d in letters] == [
        ("0", "too_deep"), ("1", "too_many_features"), ("4", "too_deep")]
    assert summary.learned == 1 and summary.predictions == 1
