"""Which records of a partition are committed, read off the log itself.

The embedded broker shows the records of aborted transactions to ``read_committed`` readers,
but it writes the transaction markers (control batches, COMMIT or ABORT) into the log as Kafka
does.  This module fetches a partition's record batches over the Kafka protocol (Fetch v4,
which librdkafka hides) and decides each transactional batch by the next marker its producer
wrote: COMMIT keeps it, ABORT drops it, no marker yet means still open (not committed).  Batches
written outside a transaction are committed as soon as they are written.

A broker that filters aborted records itself needs none of this: ``read_committed`` is then
the truth, and the tests use it directly on an external cluster.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

_FETCH, _FETCH_VERSION = 1, 4
_BATCH_HEADER = 61  # bytes of a v2 record batch before its first record


@dataclass(frozen=True)
class Batch:
    base_offset: int
    last_offset: int
    producer_id: int
    transactional: bool
    marker: str | None  # "COMMIT" or "ABORT" for a control batch, else None


def committed_offsets(batches: Sequence[Batch]) -> set[int]:
    """The offsets of committed data records, given a partition's batches in log order.

    >>> data = lambda o, pid: Batch(o, o + 1, pid, True, None)
    >>> mark = lambda o, pid, m: Batch(o, o, pid, True, m)
    >>> plain = Batch(9, 9, -1, False, None)
    >>> sorted(committed_offsets([data(0, 1), data(2, 2), mark(4, 1, "COMMIT"),
    ...                           mark(5, 2, "ABORT"), data(6, 1), plain]))
    [0, 1, 9]
    """
    open_: dict[int, list[Batch]] = {}
    committed: set[int] = set()
    for batch in batches:
        if not batch.transactional:
            committed.update(range(batch.base_offset, batch.last_offset + 1))
        elif batch.marker is None:
            open_.setdefault(batch.producer_id, []).append(batch)
        else:
            for b in open_.pop(batch.producer_id, []):
                if batch.marker == "COMMIT":
                    committed.update(range(b.base_offset, b.last_offset + 1))
    return committed


def read_batches(bootstrap: str, topic: str, partition: int) -> list[Batch]:
    """Every record batch of one partition, from offset 0 until a fetch returns nothing (the
    embedded broker's high watermarks are not to be trusted), asked of the first bootstrap
    server (the embedded broker is a single node, the leader of everything)."""
    host, port = bootstrap.split(",")[0].rsplit(":", 1)
    batches: list[Batch] = []
    offset = 0
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        for correlation in range(1, 1_000_000):
            got = list(_parse(_fetch(sock, correlation, topic, partition, offset)))
            if not got:
                return batches
            batches.extend(got)
            offset = got[-1].last_offset + 1
    raise AssertionError(f"{topic}/{partition}: no end of partition")


def _fetch(sock: socket.socket, correlation: int, topic: str, partition: int,
           offset: int) -> bytes:
    name, client = topic.encode(), b"oml-test-txlog"
    body = (
        struct.pack(">hhih", _FETCH, _FETCH_VERSION, correlation, len(client)) + client
        # replica, max wait ms, min bytes, max bytes, isolation (read_uncommitted), 1 topic
        + struct.pack(">iiiibi", -1, 100, 1, 8 << 20, 0, 1)
        + struct.pack(">h", len(name)) + name
        + struct.pack(">iiqi", 1, partition, offset, 4 << 20)
    )
    sock.sendall(struct.pack(">i", len(body)) + body)
    response = _read(sock, struct.unpack(">i", _read(sock, 4))[0])
    pos = 4 + 4 + 4  # correlation id, throttle time, topic count
    (length,) = struct.unpack_from(">h", response, pos)
    pos += 2 + length + 4  # topic name, partition count
    _, error = struct.unpack_from(">ih", response, pos)
    if error:
        raise AssertionError(f"fetch {topic}/{partition} at {offset}: error code {error}")
    pos += 4 + 2 + 8 + 8  # partition, error code, high watermark, last stable offset
    (aborted,) = struct.unpack_from(">i", response, pos)
    pos += 4 + max(aborted, 0) * 16
    (size,) = struct.unpack_from(">i", response, pos)
    return response[pos + 4:pos + 4 + max(size, 0)]


def _read(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        chunk = sock.recv(n)
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _parse(records: bytes) -> Iterator[Batch]:
    pos = 0
    while pos + _BATCH_HEADER <= len(records):
        base_offset, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records):
            return  # the response ends inside a batch: fetched again from its start
        attributes, last_delta = struct.unpack_from(">hi", records, pos + 21)
        (producer_id,) = struct.unpack_from(">q", records, pos + 43)
        marker = _marker(records, pos + _BATCH_HEADER) if attributes & 0x20 else None
        yield Batch(base_offset, base_offset + last_delta, producer_id,
                    bool(attributes & 0x10), marker)
        pos = end


def _marker(records: bytes, pos: int) -> str:
    """The kind of a control batch's one record: its key is (version, type), 0 = ABORT."""
    pos = _skip_varint(records, pos)  # record length
    pos += 1  # attributes
    pos = _skip_varint(records, pos)  # timestamp delta
    pos = _skip_varint(records, pos)  # offset delta
    pos = _skip_varint(records, pos)  # key length (4)
    _, kind = struct.unpack_from(">hh", records, pos)
    return {0: "ABORT", 1: "COMMIT"}[kind]


def _skip_varint(buf: bytes, pos: int) -> int:
    while buf[pos] & 0x80:
        pos += 1
    return pos + 1
