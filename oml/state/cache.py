"""The feature cache: unlabeled events waiting for their feedback, for one input partition.

An entry is the event's features (a row in the model bank's column space), the key whose model
scored it, the prediction it got and its event time.  The cache is bounded: entries older than
``ttl_ms`` in event time (the partition's newest event time is the clock) expire, and past
``max_entries`` the oldest are evicted.  Its changelog is written coalesced at each commit: an
entry resolved before the commit is never written, and only entries already written need a
tombstone when they go.

Changelog records are keyed by event id; the value is a versioned JSON record
(:class:`CachedEvent`), and a null value deletes.  Every record also names the input offset it
follows from (see :meth:`FeatureCache.take_changes`), which restore uses to leave out records of
input the consumer group never committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import msgspec
import numpy as np

CACHE_RECORD_VERSION = 1


class CachedEvent(msgspec.Struct, array_like=False, omit_defaults=True):
    """One feature-cache changelog value.  ``v`` is the record's schema version."""

    v: int
    key: str
    features: dict[str, float]
    ts: int
    offset: int
    prediction: Any = None


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(CachedEvent)


class CacheRecordError(ValueError):
    pass


def decode_cached(data: bytes) -> CachedEvent:
    try:
        record = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise CacheRecordError(f"feature-cache record does not decode: {exc}") from exc
    if record.v != CACHE_RECORD_VERSION:
        raise CacheRecordError(
            f"feature-cache record version {record.v}; this installation reads "
            f"version {CACHE_RECORD_VERSION}"
        )
    return record


class Entry:
    __slots__ = ("key", "offset", "persisted", "prediction", "row", "ts")

    def __init__(self, key: str, row: np.ndarray, prediction: Any, ts: int, offset: int) -> None:
        self.key = key
        self.row = row
        self.prediction = prediction
        self.ts = ts
        self.offset = offset
        self.persisted = False


class FeatureCache:
    """Cached features of one partition's unresolved events, by event id."""

    def __init__(self, ttl_ms: int, max_entries: int) -> None:
        self.ttl_ms = ttl_ms
        self.max_entries = max_entries
        self.entries: dict[str, Entry] = {}
        self._order: deque[tuple[int, str]] = deque()  # insertion order, for expiry
        self._unwritten: list[str] = []  # inserted since the last commit
        self._tombstones: list[tuple[str, int]] = []  # written earlier, gone since last commit
        self.clock = -(2**62)  # newest event time seen
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def put_many(
        self,
        event_ids: Sequence[str],
        keys: Sequence[str],
        rows: Iterable[np.ndarray],
        predictions: Sequence[Any],
        timestamps: Sequence[int],
        offsets: Sequence[int],
    ) -> None:
        entries, order, unwritten = self.entries, self._order, self._unwritten
        for event_id, key, row, prediction, ts, offset in zip(
            event_ids, keys, rows, predictions, timestamps, offsets, strict=True
        ):
            old = entries.get(event_id)
            if old is not None and old.persisted:  # a re-sent id replaces the written entry
                self._tombstones.append((event_id, offset))
            entries[event_id] = Entry(key, row, prediction, ts, offset)
            order.append((ts, event_id))
            unwritten.append(event_id)
        if len(timestamps):
            self.clock = max(self.clock, int(max(timestamps)))

    def get(self, event_id: str) -> Entry | None:
        return self.entries.get(event_id)

    def drop_many(self, event_ids: Sequence[str], offsets: Sequence[int]) -> None:
        pop, tombstones = self.entries.pop, self._tombstones
        for event_id, offset in zip(event_ids, offsets, strict=True):
            entry = pop(event_id, None)
            if entry is not None and entry.persisted:
                tombstones.append((event_id, offset))

    def drop(self, event_id: str, offset: int) -> None:
        """Forget an entry; ``offset`` is the input offset of the event that resolved it."""
        entry = self.entries.pop(event_id, None)
        if entry is not None and entry.persisted:
            self._tombstones.append((event_id, offset))

    def advance(self, ts: int) -> None:
        """Move the event-time clock (feedback events carry time too)."""
        self.clock = max(self.clock, ts)

    def expire(self, offset: int) -> int:
        """Drop entries past the TTL and beyond the size cap; return how many went.

        ``offset`` is the input position the expiry follows from (the last processed offset).
        """
        gone = 0
        horizon = self.clock - self.ttl_ms
        order, entries = self._order, self.entries
        while order and (order[0][0] < horizon or len(entries) > self.max_entries):
            ts, event_id = order.popleft()
            entry = entries.get(event_id)
            if entry is None or entry.ts != ts:
                continue  # resolved already, or replaced by a newer entry
            self.drop(event_id, offset)
            if ts < horizon:
                self.expired += 1
            else:
                self.evicted += 1
            gone += 1
        if len(order) > 2 * len(entries) + 1024:  # forget resolved ids now and then
            self._order = deque((e.ts, i) for i, e in entries.items())
            self._order = deque(sorted(self._order, key=lambda pair: pair[0]))
        return gone

    def take_changes(
        self, features: Sequence[Hashable]
    ) -> list[tuple[str, bytes | None, int]]:
        """The changelog records owed since the last commit: (event_id, value or None, offset
        of the input event it follows from)."""
        out: list[tuple[str, bytes | None, int]] = [(i, None, o) for i, o in self._tombstones]
        for event_id in self._unwritten:
            entry = self.entries.get(event_id)
            if entry is None or entry.persisted:
                continue
            entry.persisted = True
            out.append((event_id, encode_entry(entry, features), entry.offset))
        self._tombstones = []
        self._unwritten = []
        return out

    def restore(self, event_id: str, record: CachedEvent, row: np.ndarray) -> None:
        entry = Entry(record.key, row, record.prediction, record.ts, record.offset)
        entry.persisted = True
        self.entries[event_id] = entry
        self._order.append((record.ts, event_id))
        self.clock = max(self.clock, record.ts)

    def finish_restore(self) -> None:
        self._order = deque(sorted(self._order, key=lambda pair: pair[0]))


def encode_entry(entry: Entry, features: Sequence[Hashable]) -> bytes:
    values = entry.row.tolist()
    named = {str(features[j]): v for j, v in enumerate(values) if v != 0.0}
    prediction = entry.prediction
    if isinstance(prediction, np.generic):
        prediction = prediction.item()
    return _encoder.encode(
        CachedEvent(CACHE_RECORD_VERSION, entry.key, named, entry.ts, entry.offset, prediction)
    )
