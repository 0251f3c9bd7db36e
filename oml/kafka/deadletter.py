"""Dead-letter records: a bad input message, byte for byte, with why it was set aside.

The dead-letter record keeps the original key and value exactly (``None`` stays ``None``) and
the original headers in their order, then appends these headers (UTF-8 text):

* ``oml.dlq.reason``: a snake_case reason (:class:`oml.codecs.errors.Reason`): ``malformed``...
* ``oml.dlq.error``: the human-readable error message
* ``oml.dlq.source.topic``, ``oml.dlq.source.partition``, ``oml.dlq.source.offset``: where the
  message was read (partition and offset in decimal)
* ``oml.dlq.timestamp``: when it was dead-lettered, milliseconds since the epoch (decimal)
* ``oml.dlq.source.timestamp``: the original record's timestamp in ms (empty if it had none)
* ``oml.dlq.truncated``: only on a dead letter that would not fit the producer's record size
  limit (``message.max.bytes``): the original value's length in bytes; the value is then the
  longest prefix of the original that fits (the source coordinates say where the whole is)

If the original message already carries ``oml.dlq.*`` headers (a dead letter replayed into
the input that failed again), they stay among the original headers; the ones appended last are
this dead letter's, as Kafka's "last header wins" convention reads them.

>>> key, value, headers = dead_letter_record(
...     b"k1", b"{oops", [("trace", b"abc")], reason="malformed", error="bad JSON",
...     topic="events", partition=2, offset=41, timestamp_ms=1700000000000)
>>> headers[0], dict(headers)[HEADER_REASON], dict(headers)[HEADER_SOURCE_OFFSET]
(('trace', b'abc'), b'malformed', b'41')

Read back, ``dict(headers)`` keeps the last header of each name, which is this dead letter's.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import structlog
from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

__all__ = [
    "HEADER_ERROR",
    "HEADER_REASON",
    "HEADER_SOURCE_OFFSET",
    "HEADER_SOURCE_PARTITION",
    "HEADER_SOURCE_TIMESTAMP",
    "HEADER_SOURCE_TOPIC",
    "HEADER_TIMESTAMP",
    "HEADER_TRUNCATED",
    "dead_letter_for",
    "dead_letter_record",
    "produce_dead_letter",
]

log = structlog.get_logger()

PREFIX = "oml.dlq."
HEADER_REASON = "oml.dlq.reason"
HEADER_ERROR = "oml.dlq.error"
HEADER_SOURCE_TOPIC = "oml.dlq.source.topic"
HEADER_SOURCE_PARTITION = "oml.dlq.source.partition"
HEADER_SOURCE_OFFSET = "oml.dlq.source.offset"
HEADER_TIMESTAMP = "oml.dlq.timestamp"
HEADER_SOURCE_TIMESTAMP = "oml.dlq.source.timestamp"
HEADER_TRUNCATED = "oml.dlq.truncated"
RECORD_OVERHEAD = 512
"""Bytes kept free under the size limit for the record's framing (batch and record headers)."""
_OURS = (
    HEADER_REASON,
    HEADER_ERROR,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_TIMESTAMP,
    HEADER_SOURCE_TIMESTAMP,
)

MAX_ERROR_CHARS = 2000
_SNAKE = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")

Header = tuple[str, bytes | None]
Record = tuple[bytes | None, bytes | None, list[Header]]


class _Message(Protocol):
    """What is read from a ``confluent_kafka.Message``."""

    def key(self) -> Any: ...
    def value(self) -> Any: ...
    def headers(self) -> Any: ...
    def topic(self) -> Any: ...
    def partition(self) -> Any: ...
    def offset(self) -> Any: ...
    def timestamp(self) -> Any: ...


def _text(value: str | bytes) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8")


def dead_letter_record(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, str | bytes | None]] | None,
    *,
    reason: str,
    error: str,
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None = None,
    source_timestamp_ms: int | None = None,
) -> Record:
    """``(key, value, headers)`` of the dead letter for one input message.

    ``key`` and ``value`` are returned as given; ``headers`` are the original headers followed by
    the ``oml.dlq.*`` ones.  ``timestamp_ms`` defaults to now.  An error message longer than
    2000 characters is cut (headers count against the broker's record size limit).
    """
    if not _SNAKE.fullmatch(str(reason)):
        raise ValueError(f"a dead-letter reason is a snake_case word, not {reason!r}")
    if len(error) > MAX_ERROR_CHARS:
        error = error[: MAX_ERROR_CHARS - 1] + "…"
    now = int(time.time() * 1000) if timestamp_ms is None else int(timestamp_ms)
    out: list[Header] = [(name, None if v is None else _text(v)) for name, v in headers or ()]
    out += [
        (HEADER_REASON, str(reason).encode()),
        (HEADER_ERROR, error.encode("utf-8", errors="replace")),
        (HEADER_SOURCE_TOPIC, topic.encode("utf-8")),
        (HEADER_SOURCE_PARTITION, str(int(partition)).encode()),
        (HEADER_SOURCE_OFFSET, str(int(offset)).encode()),
        (HEADER_TIMESTAMP, str(now).encode()),
        (HEADER_SOURCE_TIMESTAMP,
         b"" if source_timestamp_ms is None else str(int(source_timestamp_ms)).encode()),
    ]
    return key, value, out


def dead_letter_for(
    message: _Message, reason: str, error: str, *, timestamp_ms: int | None = None
) -> Record:
    """``(key, value, headers)`` of the dead letter for a consumed ``confluent_kafka.Message``."""
    ts_type, ts = message.timestamp()
    return dead_letter_record(
        message.key(),
        message.value(),
        message.headers(),
        reason=reason,
        error=error,
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
        timestamp_ms=timestamp_ms,
        source_timestamp_ms=None if ts_type == TIMESTAMP_NOT_AVAILABLE else ts,
    )


def produce_dead_letter(
    producer: Any,
    topic: str,
    message: _Message,
    reason: str,
    error: str,
    *,
    on_delivery: Callable[[Any, Any], None] | None = None,
    queue_full_timeout: float = 30.0,
    max_bytes: int = 1_000_000,
) -> None:
    """Produce the dead letter for ``message`` to ``topic`` with ``producer``.

    A dead letter larger than ``max_bytes`` (the producer's ``message.max.bytes``) is cut to fit
    (see :func:`fit`), so that an outsized input record is set aside instead of failing the
    produce.

    The producer's partitioner places it by the original key.  With a transactional producer it
    joins the open transaction.  If the producer's queue is full this serves delivery reports
    (``poll``) until there is room, for at most ``queue_full_timeout`` seconds.
    """
    key, value, headers = fit(*dead_letter_for(message, reason, error), max_bytes=max_bytes)
    kwargs: dict[str, Any] = {"key": key, "value": value, "headers": headers}
    if on_delivery is not None:
        kwargs["on_delivery"] = on_delivery
    deadline = time.monotonic() + queue_full_timeout
    while True:
        try:
            producer.produce(topic, **kwargs)
            break
        except BufferError:
            if time.monotonic() > deadline:
                raise
            producer.poll(0.05)
    log.debug(
        "dead_lettered",
        reason=reason,
        topic=message.topic(),
        partition=message.partition(),
        offset=message.offset(),
    )


def fit(key: bytes | None, value: bytes | None, headers: list[Header], *, max_bytes: int
        ) -> Record:
    """The record as it is if it fits in ``max_bytes``; otherwise with the value cut to the
    longest prefix that fits and an ``oml.dlq.truncated`` header giving the original length.

    >>> _, value, headers = fit(b"k", b"x" * 5000, [("a", b"1")], max_bytes=RECORD_OVERHEAD + 100)
    >>> len(value), headers[-1]
    (76, ('oml.dlq.truncated', b'5000'))
    """
    size = _size(key) + _size(value) + sum(len(n) + _size(v) for n, v in headers)
    if size + RECORD_OVERHEAD <= max_bytes or value is None:
        return key, value, headers
    marker = (HEADER_TRUNCATED, str(len(value)).encode())
    headers = [*headers, marker]
    room = max_bytes - RECORD_OVERHEAD - (size - len(value)) - len(marker[0]) - len(marker[1])
    if room < 0:  # the key and headers alone are too large: keep only the coordinates
        keep = {HEADER_REASON, HEADER_ERROR, *_OURS}
        headers = [h for h in headers if h[0] in keep or h[0] == HEADER_TRUNCATED]
        key, room = None, max_bytes - RECORD_OVERHEAD - sum(len(n) + _size(v) for n, v in headers)
    return key, value[: max(room, 0)], headers


def _size(value: bytes | None) -> int:
    return 0 if value is None else len(value)

