"""The feature cache: unlabeled events waiting for their feedback.

An entry is the event's features (a row in the model bank's column space), the key whose model
scored it, the prediction it got, its event time, input offset and input partition.  One cache
serves all of an instance's partitions; each entry's changelog record goes to its own partition.
The cache is bounded: entries older than ``ttl_ms`` in event time (the newest event time seen is
the clock) expire, and past ``max_entries`` the oldest are evicted.  Its changelog is written
coalesced at each commit: an entry resolved before the commit is never written, and only entries
already written need a tombstone when they go.

Changelog records are keyed by event id; the value is a versioned JSON record
(:class:`CachedEvent`), and a null value deletes.  Every record also names the input offset it
follows from (see :meth:`FeatureCache.take_changes`), which restore uses to leave out records of
input the consumer group never committed.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from itertools import repeat
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np

from oml.codecs.batch import ColumnSpace
from oml.learner import plain

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


Entry = tuple  # (key, slot, prediction, ts, offset, partition): built in bulk, so a tuple
KEY, SLOT, PREDICTION, TS, OFFSET, PARTITION = range(6)
_SLOT_OF = itemgetter(SLOT)


class FeatureCache:
    """Cached features of unresolved events, by event id.

    An entry is the tuple ``(key, slot, prediction, ts, offset, partition)`` (index it with
    :data:`KEY`, :data:`SLOT`, ...); its features are row ``slot`` of :attr:`features`, one
    matrix for all entries, in the model bank's columns, so storing and fetching a stage's rows
    is one array operation.  Entries are kept in insertion order, which is the order the events
    were processed in; expiry and eviction take them from the front.

    The cache's clock is event time: the newest timestamp seen.  It never runs ahead of the
    wall clock (``now``, in seconds) by more than ``max_lead_ms``, so that one event stamped far
    in the future cannot expire every entry at once.
    """

    def __init__(
        self,
        ttl_ms: int,
        max_entries: int,
        *,
        max_lead_ms: int = 60_000,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.ttl_ms = ttl_ms
        self.max_lead_ms = max_lead_ms
        self._now = now
        self.max_entries = max_entries
        self.entries: dict[str, Entry] = {}
        self.features = np.zeros((0, 0))
        self._free: list[int] = []  # unused rows of features
        self._persisted: set[str] = set()  # ids whose entry is in the changelog
        self._unwritten: list[str] = []  # inserted since the last commit
        self._tombstones: list[tuple[int, str, int]] = []  # (partition, id, offset) owed
        self.clock = -(2**62)  # newest event time seen
        self.expired = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self.entries)

    def _alloc(self, n: int, width: int) -> list[int]:
        """``n`` free rows of :attr:`features`, which is at least ``width`` wide."""
        rows, cols = self.features.shape
        if width > cols or len(self._free) < n:
            grown_rows = max(rows, 1024)
            while grown_rows - rows + len(self._free) < n:
                grown_rows *= 2
            grown = np.zeros((grown_rows, max(width, cols)))
            grown[:rows, :cols] = self.features
            self.features = grown
            self._free.extend(range(grown_rows - 1, rows - 1, -1))
        slots = self._free[-n:] if n else []
        del self._free[len(self._free) - n :]
        return slots

    def features_of(self, entries: Sequence[Entry], width: int) -> np.ndarray:
        """The cached features of ``entries`` (none None), ``width`` columns."""
        out = self.features[list(map(_SLOT_OF, entries)), :width]
        if out.shape[1] < width:  # columns the bank gained since: never seen, so zero
            out = np.pad(out, ((0, 0), (0, width - out.shape[1])))
        return out

    def put_many(
        self,
        event_ids: Sequence[str],
        keys: Sequence[str],
        X: np.ndarray,
        predictions: Sequence[Any],
        timestamps: Sequence[int],
        offsets: Sequence[int],
        partitions: Sequence[int],
    ) -> None:
        if not self.entries.keys().isdisjoint(event_ids):  # re-sent ids (rare)
            resent = self._persisted.intersection(event_ids)
            if resent:  # replacing an entry already written: tombstone the old one
                self.drop_many(
                    [e for e in event_ids if e in resent],
                    [o for e, o in zip(event_ids, offsets, strict=True) if e in resent],
                )
            for event_id in self.entries.keys() & event_ids:  # not yet written
                self._free.append(self.entries.pop(event_id)[SLOT])
        n, width = X.shape
        slots = self._alloc(n, width)
        self.features[slots, :width] = X
        self.features[slots, width:] = 0.0
        fields = zip(keys, slots, predictions, timestamps, offsets, partitions, strict=True)
        before = len(self.entries)
        self.entries.update(zip(event_ids, fields, strict=True))
        if len(self.entries) - before < n:  # an id twice in one call: the last one stays
            kept = {self.entries[e][SLOT] for e in event_ids}
            self._free.extend(slot for slot in slots if slot not in kept)
        self._unwritten.extend(event_ids)
        if len(timestamps):
            self.advance(int(max(timestamps)))

    def drop_many(self, event_ids: Sequence[str], offsets: Sequence[int]) -> None:
        """Forget entries; ``offsets`` are those of the input events that resolved them."""
        persisted = self._persisted
        popped: list[Any] = list(map(self.entries.pop, event_ids, repeat(None)))
        if None in popped:
            self._free.extend(e[SLOT] for e in popped if e is not None)
        else:
            self._free.extend(map(_SLOT_OF, popped))
        if persisted.isdisjoint(event_ids):
            return
        written = persisted.intersection(event_ids)
        if written:
            persisted.difference_update(written)
            self._tombstones.extend(
                (entry[PARTITION], e, o)
                for e, o, entry in zip(event_ids, offsets, popped, strict=True)
                if e in written and entry is not None
            )

    def advance(self, ts: int) -> None:
        """Move the event-time clock (feedback events carry time too), never further than
        ``max_lead_ms`` past the wall clock."""
        if ts > self.clock:
            self.clock = min(ts, max(self.clock, int(self._now() * 1000) + self.max_lead_ms))

    def expire(self, positions: dict[int, int]) -> int:
        """Drop entries past the TTL and beyond the size cap; return how many went.

        ``positions`` gives each partition's last processed input offset, which the
        tombstones of expired entries follow from.
        """
        horizon = self.clock - self.ttl_ms
        entries = self.entries
        over = len(entries) - self.max_entries
        gone: list[str] = []
        for event_id, entry in entries.items():
            if entry[TS] < horizon:
                self.expired += 1
            elif len(gone) < over:
                self.evicted += 1
            else:
                break
            gone.append(event_id)
        if gone:
            self.drop_many(gone, [positions.get(entries[e][PARTITION], -1) for e in gone])
        return len(gone)

    def take_changes(
        self, features: Sequence[Hashable]
    ) -> list[tuple[int, str, bytes | None, int]]:
        """The changelog records owed since the last commit: (partition, event_id, value or
        None, offset of the input event it follows from)."""
        out: list[tuple[int, str, bytes | None, int]] = [
            (p, i, None, o) for p, i, o in self._tombstones
        ]
        entries, persisted = self.entries, self._persisted
        for event_id in filter(entries.__contains__, self._unwritten):  # most are resolved
            entry = entries[event_id]
            if event_id in persisted:
                continue
            persisted.add(event_id)
            row = self.features[entry[SLOT], : len(features)]
            out.append((entry[PARTITION], event_id, encode_entry(entry, row, features),
                        entry[OFFSET]))
        self._tombstones = []
        self._unwritten = []
        return out

    def drop_partition(self, partition: int) -> None:
        """Forget a partition's entries (its changelog keeps them for the next owner)."""
        mine = [e for e, entry in self.entries.items() if entry[PARTITION] == partition]
        for event_id in mine:
            self._free.append(self.entries.pop(event_id)[SLOT])
        self._persisted.difference_update(mine)

    def restore(
        self, partition: int, records: Iterable[tuple[str, CachedEvent, np.ndarray]]
    ) -> None:
        """Load a partition's changelog records (event id, record, its features as a row in the
        bank's columns: :func:`features_row`)."""
        for event_id, record, row in sorted(records, key=lambda r: r[1].ts):
            (slot,) = self._alloc(1, len(row))
            self.features[slot, : len(row)] = row
            self.features[slot, len(row) :] = 0.0
            self.entries[event_id] = (record.key, slot, record.prediction, record.ts,
                                      record.offset, partition)
            self._persisted.add(event_id)
            self.advance(record.ts)


def encode_entry(entry: Entry, row: np.ndarray, features: Sequence[Hashable]) -> bytes:
    """An entry's changelog value: its features by name (the non-zero columns of ``row``, named
    by ``features``), as :func:`features_row` reads them back."""
    values = row.tolist()
    named = {str(features[j]): v for j, v in enumerate(values) if v != 0.0}
    prediction = plain(entry[PREDICTION])
    return _encoder.encode(CachedEvent(
        CACHE_RECORD_VERSION, entry[KEY], named, int(entry[TS]), int(entry[OFFSET]), prediction
    ))


def features_row(record: CachedEvent, space: ColumnSpace) -> np.ndarray:
    """A changelog record's features as a row in ``space``'s columns (a bank's, which gains
    columns for names it has not seen): the layout :func:`encode_entry` wrote by name."""
    cols = space.columns(list(record.features))
    row = np.zeros(len(space.features))
    row[cols] = list(record.features.values())
    return row
