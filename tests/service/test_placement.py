"""Where the outputs land, on a real broker: a key's predictions go to the partition number its
input came from when the input was placed by Java's default partitioner (murmur2), as
`oml produce`, Kafka Streams and the Java client place it."""

from __future__ import annotations

import json

import pytest

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
