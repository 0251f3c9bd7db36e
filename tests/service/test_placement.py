"""Where the outputs land, on a real broker: a key's predictions go to the partition number its
input came from when the input was placed by Java's default partitioner (murmur2), as
`oml produce`, Kafka Streams and the Java client place it."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import NewTopic
from structlog.testing import capture_logs

from oml.codecs.events import Event
from oml.replay import produce_events
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_predictions_are_co_partitioned_with_murmur2_placed_input(setup, bootstrap_servers,
                                                                  read_all):
    config = setup(**{"model.algorithm": "pa"})
    events = [Event(f"e{i}", f"key-{i}", [float(i % 5), 1.0]) for i in range(200)]
    produce_events(config, bootstrap_servers, iter(events))  # murmur2, like Java

    Service(config).run()

    source = {json.loads(r.value)["event_id"]: r.partition for r in read_all(config.topics.input)}
    placed = {json.loads(r.value)["event_id"]: r.partition
              for r in read_all(config.topics.predictions)}
    assert len(set(source.values())) == 4  # the keys spread over every partition
    assert placed == source


def test_a_key_that_reaches_a_second_partition_loses_no_feedback(setup, kafka_config):
    """A stray record of a key in another partition, at a higher offset than the key's own
    partition has reached, must not make the key's later feedback look replayed."""
    config = setup(**{"model.algorithm": "pa"})
    Service(config).run()
    producer = Producer({**kafka_config, "linger.ms": 5})

    def send(partition, body):
        producer.produce(config.topics.input, json.dumps(body).encode(), b"k", partition=partition)

    for i in range(50):  # other keys move partition 1 ahead
        send(1, {"event_id": f"o{i}", "key": f"other-{i}", "features": [1.0, 0.0]})
    send(1, {"event_id": "stray", "key": "k", "features": [1.0, 1.0]})
    send(1, {"event_id": "stray", "key": "k", "label": True})
    for i in range(20):
        send(0, {"event_id": f"e{i}", "key": "k", "features": [float(i % 3), 1.0]})
        send(0, {"event_id": f"e{i}", "key": "k", "label": i % 2 == 0})
    assert producer.flush(30) == 0

    service = Service(config)
    summary = service.run()

    assert summary.learned == 21 and summary.duplicates == 0 and not summary.dead_letters
    # never silent: the key reaching a second partition is counted (once, however many events)
    split = service.metrics.registry.get_sample_value("oml_keys_on_two_partitions_total")
    assert split == 1


def test_two_producers_with_two_partitioners_lose_nothing_and_outputs_follow_the_input(
    setup, kafka_config, read_all
):
    """A Java-style producer (murmur2) and a second client on librdkafka's default (crc32) send
    the same keys, so most keys reach two partitions.  Before: 810 of 1,600 predictions landed
    in another partition number than their event, and feedback was silently lost.  Now every
    feedback event is learned or dead-lettered, and every prediction is in its event's
    partition number."""
    config = setup(**{"model.algorithm": "pa"})
    producers = [Producer({**kafka_config, "linger.ms": 5, "partitioner": name})
                 for name in ("murmur2_random", "consistent_random")]
    sent_feedback = 0
    for i in range(400):
        producer = producers[i % 2]  # an event and its feedback from the same client
        key = f"key-{i % 40}".encode()
        body = {"event_id": f"e{i}", "key": key.decode(), "features": [float(i % 5), 1.0]}
        producer.produce(config.topics.input, json.dumps(body).encode(), key)
        feedback = {"event_id": f"e{i}", "key": key.decode(), "label": i % 3 == 0}
        producer.produce(config.topics.input, json.dumps(feedback).encode(), key)
        sent_feedback += 1
    assert all(p.flush(30) == 0 for p in producers)
    producers.clear()  # closed now, not when the test broker is gone

    summary = Service(config).run()

    source = {}
    for r in read_all(config.topics.input):
        body = json.loads(r.value)
        if "features" in body:
            source[body["event_id"]] = r.partition
    placed = {json.loads(r.value)["event_id"]: r.partition
              for r in read_all(config.topics.predictions)}
    assert placed == source  # one prediction per event, in its event's partition number
    dead = sum(summary.dead_letters.values())
    assert summary.learned + dead == sent_feedback and summary.duplicates == 0


def test_a_predictions_topic_with_another_partition_count_is_said_once_and_still_gets_all(
    setup, bootstrap_servers, kafka_admin, read_all
):
    """A predictions topic made by hand with 2 partitions for a 4-partition input: producing to
    the event's partition number would fail for partitions 2 and 3, so predictions are placed
    by key, and one warning says why."""
    config = setup(**{"model.algorithm": "pa"})
    topic = config.topics.predictions
    kafka_admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    events = [Event(f"e{i}", f"key-{i}", [float(i % 5), 1.0]) for i in range(200)]
    produce_events(config, bootstrap_servers, iter(events))

    with capture_logs() as logs:
        Service(config).run()

    warned = [e for e in logs if e["event"] == "predictions_not_copartitioned"]
    assert len(warned) == 1 and warned[0]["partitions"] == 2 and warned[0]["input_partitions"] == 4
    placed = [json.loads(r.value)["event_id"] for r in read_all(topic)]
    assert sorted(placed) == sorted(e.event_id for e in events)
