"""The exactly-once cycle with oml's client configs: consume in a group, produce in a
transaction, add the input offsets to it, commit; an aborted transaction moves no offset."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from oml.kafka.clients import (
    consumer_config,
    describe_error,
    transactional_producer_config,
)

pytestmark = pytest.mark.broker

FAST_GROUP = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


def _extra(kafka_config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in kafka_config.items() if k != "bootstrap.servers"}


def _consume_n(consumer: Consumer, n: int, timeout: float = 30) -> list[Message]:
    out: list[Message] = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for m in consumer.consume(100, 0.2):
            if m.error() is not None:
                raise AssertionError(describe_error(m.error()))
            out.append(m)
    return out


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for m in messages:
        last[(m.topic(), m.partition())] = m.offset() + 1
    return [TopicPartition(t, p, o) for (t, p), o in sorted(last.items())]


def test_send_offsets_to_transaction_cycle(
    kafka_config: dict[str, Any],
    new_topic: Callable[..., str],
    produce_records: Callable[..., None],
    read_all: Callable[..., list[Any]],
) -> None:
    source = new_topic(partitions=2)
    sink = new_topic(partitions=2)
    group = f"eos-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka_config["bootstrap.servers"]
    extra = _extra(kafka_config)
    produce_records(source, [(b"k%d" % i, b"%d" % i) for i in range(20)])

    consumer = Consumer(consumer_config(bootstrap, group, {**extra, **FAST_GROUP}))
    producer = Producer(transactional_producer_config(bootstrap, group, "test-0", extra))
    producer.init_transactions(30)
    consumer.subscribe([source])

    # committed cycles: everything read is transformed, written and its offsets committed
    seen = 0
    deadline = time.monotonic() + 30
    while seen < 20 and time.monotonic() < deadline:
        batch = [m for m in consumer.consume(100, 0.5) if m.error() is None]
        if not batch:
            continue
        producer.begin_transaction()
        for m in batch:
            producer.produce(sink, key=m.key(), value=b"out-" + m.value(), partition=m.partition())
        producer.send_offsets_to_transaction(
            _next_offsets(batch), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        seen += len(batch)
    assert seen == 20

    out = read_all(sink)
    assert sorted(r.value for r in out) == sorted(b"out-%d" % i for i in range(20))
    committed = consumer.committed([TopicPartition(source, p) for p in (0, 1)], timeout=10)
    ends = {p: 1 + max(r.offset for r in read_all(source) if r.partition == p) for p in (0, 1)}
    assert {tp.partition: tp.offset for tp in committed} == ends

    # an aborted cycle: its offsets are not committed
    produce_records(source, [(b"late", b"late")], partition=0)
    batch = _consume_n(consumer, 1)
    producer.begin_transaction()
    producer.produce(sink, key=b"late", value=b"out-late", partition=0)
    producer.send_offsets_to_transaction(
        _next_offsets(batch), consumer.consumer_group_metadata(), 30
    )
    producer.abort_transaction(30)
    committed = consumer.committed([TopicPartition(source, 0)], timeout=10)
    assert committed[0].offset == ends[0]
    consumer.close()

    # a new member of the group resumes at the committed offsets: the aborted record again
    again = Consumer(consumer_config(bootstrap, group, {**extra, **FAST_GROUP}))
    again.subscribe([source])
    try:
        replay = _consume_n(again, 1)
        assert [(m.partition(), m.offset(), m.value()) for m in replay] == [
            (0, ends[0], b"late")
        ]
        assert again.consume(10, 1.0) == []  # nothing else
    finally:
        again.close()


def test_a_second_instance_with_the_same_id_fences_the_first(
    kafka_config: dict[str, Any], new_topic: Callable[..., str]
) -> None:
    """The zombie learns it is fenced from its next write (Tansu drops the connection on a
    fenced EndTxn instead of answering, so the test writes before committing)."""
    sink = new_topic()
    bootstrap = kafka_config["bootstrap.servers"]
    extra = _extra(kafka_config)
    group = f"fence-{uuid.uuid4().hex[:8]}"
    first = Producer(transactional_producer_config(bootstrap, group, "same", extra))
    first.init_transactions(30)
    first.begin_transaction()
    first.produce(sink, value=b"zombie", partition=0)
    first.flush(10)

    second = Producer(transactional_producer_config(bootstrap, group, "same", extra))
    second.init_transactions(30)

    errors: list[Any] = []
    first.produce(sink, value=b"zombie-2", partition=0, on_delivery=lambda e, _m: errors.append(e))
    first.flush(10)
    assert errors and errors[0] is not None
    with pytest.raises(KafkaException) as info:
        first.commit_transaction(10)
    for error in (errors[0], info.value):
        message = describe_error(error)
        assert "fenced" in message.lower() or "epoch" in message.lower(), message
