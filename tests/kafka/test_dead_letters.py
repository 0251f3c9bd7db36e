"""Dead letters keep the original bytes and headers exactly, and say why in oml.dlq.* headers."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from oml.codecs.errors import Reason
from oml.kafka.deadletter import (
    HEADER_ERROR,
    HEADER_REASON,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_TIMESTAMP,
    HEADER_SOURCE_TOPIC,
    HEADER_TIMESTAMP,
    dead_letter_record,
    produce_dead_letter,
)

OURS = [HEADER_REASON, HEADER_ERROR, HEADER_SOURCE_TOPIC, HEADER_SOURCE_PARTITION,
        HEADER_SOURCE_OFFSET, HEADER_TIMESTAMP, HEADER_SOURCE_TIMESTAMP]


def _consume_all(kafka_config: dict[str, Any], topic: str, n: int) -> list[Message]:
    consumer = Consumer(
        {**kafka_config, "group.id": f"dlq-{uuid.uuid4().hex[:6]}", "enable.partition.eof": True}
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[Message] = []
    deadline = time.monotonic() + 20
    try:
        while len(out) < n and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.2):
                if m.error() is None:
                    out.append(m)
                elif m.error().code() != KafkaError._PARTITION_EOF:
                    raise AssertionError(str(m.error()))
    finally:
        consumer.close()
    assert len(out) == n
    return out


ORIGINALS = [
    # binary, not UTF-8, with duplicate and null-valued headers
    (b"\x00key\xff", b"\xff\xfe{not json", [("trace", b"t-1"), ("trace", b"t-2"), ("empty", None)]),
    (None, None, None),  # null key, tombstone value, no headers
    (b"", b"", [("h", b"")]),  # empty is not null
]


@pytest.mark.broker
def test_round_trip_keeps_bytes_and_headers(
    kafka_config: dict[str, Any],
    new_topic: Callable[..., str],
    produce_records: Callable[..., None],
    read_all: Callable[..., list[Any]],
) -> None:
    source = new_topic()
    dlq = new_topic()
    produce_records(source, ORIGINALS, partition=0)
    messages = _consume_all(kafka_config, source, len(ORIGINALS))

    producer = Producer(kafka_config)
    reasons = [Reason.MALFORMED, "missing_field", Reason.NOT_FINITE]
    before = int(time.time() * 1000)
    for message, reason in zip(messages, reasons, strict=True):
        produce_dead_letter(producer, dlq, message, reason, f"cannot use it: {reason}")
    assert producer.flush(10) == 0

    records = read_all(dlq)
    assert len(records) == len(ORIGINALS)
    by_offset = {m.offset(): m for m in messages}
    for record in records:
        original = by_offset[int(record.header(HEADER_SOURCE_OFFSET))]
        assert record.key == original.key()
        assert record.value == original.value()
        kept = list(original.headers() or [])
        assert record.headers[: len(kept)] == kept  # in their order, duplicates and nulls too
        assert [name for name, _ in record.headers[len(kept) :]] == OURS
        assert record.header(HEADER_SOURCE_TOPIC) == source
        assert record.header(HEADER_SOURCE_PARTITION) == "0"
        assert before <= int(record.header(HEADER_TIMESTAMP)) <= int(time.time() * 1000)
        assert int(record.header(HEADER_SOURCE_TIMESTAMP)) == original.timestamp()[1]
        assert record.header(HEADER_ERROR) == f"cannot use it: {record.header(HEADER_REASON)}"
    assert [r.header(HEADER_REASON) for r in records] == [str(r) for r in reasons]


def test_dead_letter_of_a_dead_letter() -> None:
    """A dead letter replayed into the input and rejected again: the newest reason wins, and
    the previous dead letter's headers stay among the original headers."""
    _, _, first = dead_letter_record(
        b"k", b"v", [("a", b"1")], reason="malformed_json", error="e1",
        topic="in", partition=0, offset=5,
    )
    _, _, second = dead_letter_record(
        b"k", b"v", first, reason="bad_label", error="e2", topic="replay", partition=1, offset=9,
    )
    newest = dict(second)  # the last header of each name
    assert [newest[h] for h in (HEADER_REASON, HEADER_ERROR, HEADER_SOURCE_TOPIC,
                                HEADER_SOURCE_OFFSET)] == [b"bad_label", b"e2", b"replay", b"9"]
    assert second[: len(first)] == first
    assert [name for name, _ in second[len(first) :]] == OURS
    assert dict(first)[HEADER_REASON] == b"malformed_json"


def test_reason_must_be_snake_case() -> None:
    for bad in ("Malformed JSON", "bad-label", "", "_x", "x_"):
        with pytest.raises(ValueError, match="snake_case"):
            dead_letter_record(None, None, None, reason=bad, error="", topic="t", partition=0,
                               offset=0)
    dead_letter_record(None, None, None, reason="key_mismatch", error="", topic="t",
                       partition=0, offset=0)


def test_long_error_is_cut() -> None:
    _, _, headers = dead_letter_record(
        None, b"x", None, reason="schema_mismatch", error="é" * 5000, topic="t", partition=0,
        offset=0,
    )
    error = dict(headers)[HEADER_ERROR].decode()
    assert len(error) == 2000 and error.endswith("…")

