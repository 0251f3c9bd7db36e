"""Reading a changelog partition from its beginning to its end, to rebuild state.

The end is where the broker says it is *for this reader*: the consumer is assigned the
partition (no group, nothing committed), reads with ``isolation.level=read_committed`` and
``enable.partition.eof=true``, and stops at the partition-EOF event, which librdkafka raises
when a fetch reaches the last stable offset.  Watermarks are not used: they are not the end a
read_committed reader sees (records of open transactions sit below the high watermark), and
some brokers report them wrong.

Records come in batches (``consume(n)``) in offset order, and :meth:`ChangelogReader.latest`
applies them: the last record per key wins and a null value deletes, which is right whether or
not the broker has compacted the topic yet.  It also leaves out the records that follow from
input the consumer group never committed: every changelog record names, in its
:data:`OFFSET_HEADER` header, the input offset it follows from.

Under ``read_committed`` a record of an aborted transaction is never returned, provided the
broker reports aborted transactions in its fetch responses, as Kafka does.  **Tansu 0.6 does not**
(its fetch always answers with an empty aborted-transactions list), so on the embedded broker
records of aborted transactions *are* returned; records of a transaction still open are not.

Reading::

    with ChangelogReader({"bootstrap.servers": "localhost:9092", **security}) as reader:
        for partition in assigned:
            # key -> (value, changelog offset), of input before the committed offset
            state = reader.latest("oml.events.models", partition, before=committed[partition])
            ...
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from oml.kafka.clients import describe_error, restore_consumer_config

__all__ = [
    "OFFSET_HEADER",
    "ChangelogReader",
    "RestoreError",
]

log = structlog.get_logger()

Record = tuple[bytes | None, bytes | None, int]
ClientConfig = str | Mapping[str, Any]

# consume(n, timeout) returns when n records are in or the timeout is up, whichever is first,
# even when the end-of-partition event arrived: a short timeout ends each partition promptly.
_POLL_TIMEOUT = 0.05

# Consume errors that waiting will not cure; any other is logged, and the idle timeout bounds
# how long the reader waits for librdkafka to recover (broker restarts, leader moves...).
_TERMINAL = frozenset({
    KafkaError.UNKNOWN_TOPIC_OR_PART,
    KafkaError._UNKNOWN_TOPIC,
    KafkaError._UNKNOWN_PARTITION,
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError._AUTHENTICATION,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError._AUTO_OFFSET_RESET,
})


OFFSET_HEADER = "oml.offset"
"""Changelog record header: the input offset the record follows from."""


class RestoreError(RuntimeError):
    """State cannot be restored: a changelog partition could not be read to its end, or one of
    its records cannot be decoded.  The service stops rather than skip it."""


def _config(config: ClientConfig) -> dict[str, Any]:
    """A bootstrap string, or librdkafka settings (``bootstrap.servers`` and any passthrough:
    SASL, TLS...) laid over the restore consumer's defaults."""
    if isinstance(config, str):
        return restore_consumer_config(config)
    settings = dict(config)
    bootstrap = settings.pop("bootstrap.servers", None)
    if not bootstrap:
        raise ValueError("the restore reader's config needs bootstrap.servers")
    return restore_consumer_config(str(bootstrap), settings)


class ChangelogReader:
    """One consumer that reads changelog partitions to their end, one partition at a time.

    Args:
        config: bootstrap servers, or a dict of librdkafka settings including
            ``bootstrap.servers`` (merged over :func:`~oml.kafka.clients.restore_consumer_config`).
        batch_size: records asked for per ``consume`` call.
        idle_timeout: seconds without any record or end-of-partition before giving up.

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self, config: ClientConfig, *, batch_size: int = 10_000, idle_timeout: float = 30.0
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self.batch_size = batch_size
        self.idle_timeout = idle_timeout
        self._consumer = Consumer(_config(config))
        self._partitions: dict[str, int] = {}

    def __enter__(self) -> ChangelogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._consumer.close()

    def _check_partition(self, topic: str, partition: int) -> None:
        """Fail fast on a missing topic or partition: librdkafka would wait for it forever."""
        if topic not in self._partitions:
            try:
                metadata = self._consumer.list_topics(topic, timeout=self.idle_timeout)
            except KafkaException as exc:
                raise RestoreError(
                    describe_error(exc, f"cannot read metadata of {topic!r}")
                ) from exc
            found = metadata.topics.get(topic)
            if found is None or found.error is not None:
                why = describe_error(found.error) if found is not None and found.error else ""
                raise RestoreError(f"changelog topic {topic!r} cannot be read: {why}".rstrip(": "))
            self._partitions[topic] = len(found.partitions)
        n = self._partitions[topic]
        if not 0 <= partition < n:
            raise RestoreError(f"changelog topic {topic!r} has no partition {partition} "
                               f"(it has {n})")

    def batches(
        self,
        topic: str,
        partition: int,
        start_offset: int = OFFSET_BEGINNING,
        *,
        headers: bool = False,
    ) -> Iterator[list[Record]]:
        """Lists of ``(key, value, offset)`` in offset order, until the partition's end.

        With ``headers=True`` each record is ``(key, value, offset, headers)``.

        An empty partition yields nothing.  Raises :class:`RestoreError` on a Kafka error that
        retrying will not fix, or after ``idle_timeout`` seconds without progress.
        """
        for messages in self._messages(topic, partition, start_offset):
            if headers:
                yield [(m.key(), m.value(), m.offset(), m.headers() or [])  # type: ignore[misc]
                       for m in messages]
            else:
                yield [(m.key(), m.value(), m.offset()) for m in messages]  # type: ignore[misc]

    def _messages(self, topic: str, partition: int, start_offset: int = OFFSET_BEGINNING,
                  ) -> Iterator[list[Any]]:
        """The partition's records as lists of messages without error, until its end (what
        :meth:`batches` documents)."""
        self._check_partition(topic, partition)
        consumer = self._consumer
        consumer.assign([TopicPartition(topic, partition, start_offset)])
        eof = KafkaError._PARTITION_EOF
        count = 0
        last_offset = -1
        started = progress = time.monotonic()
        try:
            while True:
                messages = consumer.consume(self.batch_size, _POLL_TIMEOUT)
                done = False
                records: list[Any] = []
                for m in messages:
                    error = m.error()
                    if error is None:
                        records.append(m)
                    elif error.code() == eof:
                        done = True
                    elif error.fatal() or error.code() in _TERMINAL:
                        raise RestoreError(describe_error(
                            error, f"reading {topic!r} partition {partition} after offset "
                                   f"{last_offset}"))
                    else:
                        log.warning("restore_consume_error", topic=topic, partition=partition,
                                    error=describe_error(error))
                if records:
                    count += len(records)
                    last_offset = records[-1].offset()
                    progress = time.monotonic()
                    yield records
                if done:
                    break
                if time.monotonic() - progress > self.idle_timeout:
                    raise RestoreError(
                        f"reading {topic!r} partition {partition}: no record and no end of "
                        f"partition for {self.idle_timeout:g}s (last offset read: {last_offset})"
                    )
        finally:
            consumer.unassign()
        seconds = time.monotonic() - started
        log.info("changelog_partition_read", topic=topic, partition=partition, records=count,
                 last_offset=last_offset, seconds=round(seconds, 3))

    def read(
        self, topic: str, partition: int, start_offset: int = OFFSET_BEGINNING
    ) -> Iterator[Record]:
        """``(key, value, offset)`` one by one, in offset order, until the partition's end."""
        for batch in self.batches(topic, partition, start_offset):
            yield from batch

    def latest(
        self,
        topic: str,
        partition: int,
        *,
        before: int,
        progress: Callable[[int], None] | None = None,
    ) -> dict[bytes, tuple[bytes, int]]:
        """The last value per key of a changelog partition (a null deletes), as ``key ->
        (value, changelog offset)``, among records that follow from input before ``before``
        (records without the :data:`OFFSET_HEADER` header always count).  ``progress`` is
        told how many records each batch held.

        One pass keeps each key's last record and parses the headers of those alone; only if
        one of them follows from input at or past ``before`` (after a crash) is the partition
        read again with every record's header checked, since the record before it may count.
        """
        last: dict[bytes, tuple[bytes | None, int, Any]] = {}
        for messages in self._messages(topic, partition):  # one loop per record: restore's
            for m in messages:                             # cost, so nothing else in it
                last[m.key()] = (m.value(), m.offset(), m.headers())  # type: ignore[index]
            if progress is not None:
                progress(len(messages))
        out: dict[bytes, tuple[bytes, int]] = {}
        for key, (value, offset, headers) in last.items():
            if headers and (source := offset_header(headers)) is not None and source >= before:
                # uncommitted work is some key's last record: the record before it may count,
                # so read again, filtering each record (after a crash only)
                return self._latest_filtered(topic, partition, before)
            if value is not None:
                out[key] = (value, offset)
        return out

    def _latest_filtered(self, topic: str, partition: int, before: int,
                         ) -> dict[bytes, tuple[bytes, int]]:
        """:meth:`latest`, each record's header checked as it is read."""
        latest: dict[bytes, tuple[bytes | None, int]] = {}
        for messages in self._messages(topic, partition):
            for m in messages:
                headers = m.headers()
                if headers and (source := offset_header(headers)) is not None \
                        and source >= before:
                    continue
                latest[m.key()] = (m.value(), m.offset())
        return {k: (v, o) for k, (v, o) in latest.items() if v is not None}


def offset_header(headers: list[tuple[str, bytes]] | None) -> int | None:
    """The input offset a changelog record names in its :data:`OFFSET_HEADER` header."""
    for name, value in headers or ():
        if name == OFFSET_HEADER:
            return int(value)
    return None

