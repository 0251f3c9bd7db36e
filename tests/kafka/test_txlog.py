"""The test helper that tells committed records from aborted ones on the embedded broker
(tests/txlog.py) against a real broker: it must agree with what the transactions did."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

pytestmark = pytest.mark.broker


def test_committed_records_are_told_from_aborted_and_open_ones(new_topic, kafka_config,
                                                                read_committed):
    topic = new_topic()
    producer = Producer({**kafka_config, "transactional.id": f"{topic}-tx",
                         "compression.type": "lz4"})
    producer.init_transactions(30)
    for outcome in ["commit", "abort", "commit", "open"]:
        producer.begin_transaction()
        for i in range(3):
            producer.produce(topic, value=f"{outcome}-{i}".encode(), partition=0)
        producer.flush(30)
        if outcome == "commit":
            producer.commit_transaction(30)
        elif outcome == "abort":
            producer.abort_transaction(30)
    # a new producer with the same transactional id fences the open transaction (aborting it)
    successor = Producer({**kafka_config, "transactional.id": f"{topic}-tx"})
    successor.init_transactions(30)
    successor.begin_transaction()
    successor.produce(topic, value=b"successor", partition=0)
    successor.commit_transaction(30)
    plain = Producer(kafka_config)
    plain.produce(topic, value=b"plain", partition=0)
    plain.flush(30)

    values = [r.value for r in read_committed(topic)]
    assert values == [b"commit-0", b"commit-1", b"commit-2"] * 2 + [b"successor", b"plain"]
