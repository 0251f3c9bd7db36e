"""Through the service on the embedded broker: a key's ``proba`` is over its own classes
whatever the batch size, and a label past ``model.max_classes`` is a ``too_many_classes``
dead letter."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer

from oml.config import load_config
from oml.kafka.deadletter import HEADER_REASON
from oml.service import Service

TEST_CLIENT = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def events() -> list[tuple[bytes, bytes]]:
    """Key ``k`` meets classes a, b, then c (one too many); key ``other`` knows x and y."""
    out = []
    for i, (key, label) in enumerate(
        [("k", "a"), ("other", "x"), ("k", "b"), ("other", "y"), ("k", "c"), ("k", "a"),
         ("other", "x")]
    ):  # fmt: skip
        sign = 1.0 if i % 2 else -1.0
        out.append((key, {"event_id": f"e{i}", "key": key, "features": [sign, 0.5 * i]}))
        out.append((key, {"event_id": f"e{i}", "key": key, "label": label}))
    return [(k.encode(), json.dumps(v).encode()) for k, v in out]


@pytest.mark.parametrize("batch_size", [10_000, 1])
def test_proba_is_per_key_and_a_class_too_many_is_dead_lettered(
    batch_size, bootstrap_servers, kafka_config, new_topic, read_all
):
    topic = new_topic(partitions=1)
    config = load_config(None, {}, {
        "kafka.bootstrap_servers": bootstrap_servers,
        "kafka.group_id": f"g-{topic}",
        "kafka.instance_id": "one",
        "kafka.librdkafka": {**{k: v for k, v in kafka_config.items()
                                if k != "bootstrap.servers"}, **TEST_CLIENT},
        "topics.input": topic,
        "model.algorithm": "pa",
        "model.max_classes": 2,
        "processing.batch_size": batch_size,
        "processing.exit_when_idle_s": 2.0,
        "processing.commit_interval_ms": 200,
    })  # fmt: skip
    producer = Producer(kafka_config)
    for key, value in events():
        producer.produce(topic, value=value, key=key)
    producer.flush(10)

    Service(config).run()

    predictions = {
        (p := json.loads(r.value))["event_id"]: p
        for r in read_all(config.topics.predictions)
    }
    first, second, third = predictions["e0"], predictions["e2"], predictions["e4"]
    assert (first["prediction"], first["proba"]) == (None, {})
    assert (second["prediction"], second["proba"]) == ("a", {"a": 1.0})
    assert set(third["proba"]) == {"a", "b"}
    assert set(predictions["e5"]["proba"]) == {"a", "b"}  # c was refused
    assert predictions["e1"]["proba"] == {}
    assert set(predictions["e6"]["proba"]) == {"x", "y"}

    letters = read_all(config.topics.dead_letter)
    assert [letter.header(HEADER_REASON) for letter in letters] == ["too_many_classes"]
