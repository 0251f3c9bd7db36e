"""What the input decoders hand over: :class:`DecodedBatch`, the good messages of a batch as
columns, and the column helpers the formats share (their internal :class:`Parsed` hand-off)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import is_not, itemgetter
from typing import Any, Protocol

import msgspec
import numpy as np

from oml.codecs.errors import BadMessage
from oml.config import FieldNames

Label = bool | int | float | str
Features = dict[str, float] | list[float]

Bad = dict[int, tuple[str, str]]
"""Rows found bad by a check: row -> (reason, message)."""

NO_TIMESTAMP = -1
"""The timestamp of an event with none in its body and no Kafka timestamp given."""


class ColumnSpace(Protocol):
    """What :meth:`DecodedBatch.matrix` needs of a bank: its feature columns."""

    features: list[Hashable]

    def columns(self, names: Sequence[Hashable]) -> np.ndarray: ...


@dataclass(frozen=True)
class Source:
    """What Kafka says about each message of a batch: timestamps and keys, read only when some
    body lacks them, and partitions and offsets (None: the caller gave none)."""

    timestamps: Callable[[], np.ndarray] | None = None
    keys: Callable[[], Sequence[bytes | str | None]] | None = None
    partitions: np.ndarray | None = None
    offsets: np.ndarray | None = None

    def one(self, i: int) -> Source:
        """The source of message ``i`` alone."""
        ts, ks = self.timestamps, self.keys
        return Source(
            None if ts is None else (lambda: ts()[i : i + 1]),
            None if ks is None else (lambda: [ks()[i]]),
            None if self.partitions is None else self.partitions[i : i + 1],
            None if self.offsets is None else self.offsets[i : i + 1],
        )


@dataclass(eq=False)
class DecodedBatch:
    """The good messages of a batch, as columns; row ``i`` came from input ``index[i]``.

    Attributes:
        index: (m,) intp, the position of each row's message in the decoded batch.
        event_ids, keys: (m,) str.
        partitions: (m,) int32 Kafka partition of each row (-1 if the caller gave none).
        offsets: (m,) int64 Kafka offset of each row (-1 if the caller gave none).
        has_label: (m,) bool; True for feedback.
        labels: (m,) the label, None where ``has_label`` is False.
        has_features: (m,) bool.
        feature_names: the columns of ``X``.
        X: (m, len(feature_names)) float64; zeros where a row lacks a feature (or features).
        xs: None when every row with features has the same names in the same order (then
            ``X`` says everything); otherwise each row's features as a dict (None if it has none).
        timestamps: (m,) int64 event time in ms: the message's own, else the Kafka timestamp,
            else -1.
        errors: one :class:`BadMessage` per message that could not be decoded, by index.
        clamped: how many event times were moved into the accepted window (policy ``clamp``).
        source_partitions, source_offsets: (n,) the partition and offset of every message
            given, good or bad (None if the caller gave none); see :meth:`last_offsets`.
    """

    index: np.ndarray
    event_ids: list[str]
    keys: list[str]
    partitions: np.ndarray
    offsets: np.ndarray
    has_label: np.ndarray
    labels: list[Label | None]
    has_features: np.ndarray
    feature_names: list[str]
    X: np.ndarray
    xs: list[dict[str, float] | None] | None
    timestamps: np.ndarray
    errors: list[BadMessage] = field(default_factory=list)
    clamped: int = 0
    source_partitions: np.ndarray | None = None
    source_offsets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.event_ids)

    def last_offsets(self) -> dict[int, int]:
        """Each partition's last offset among all the messages given, dead letters included
        (empty if the caller gave no partitions and offsets)."""
        parts, offs = self.source_partitions, self.source_offsets
        if parts is None or offs is None or not len(parts):
            return {}
        first = int(parts[0])
        if (parts == first).all():
            return {first: int(offs.max())}
        return {p: int(offs[parts == p].max()) for p in np.unique(parts).tolist()}

    def features(self, row: int) -> dict[str, float] | None:
        """Row ``row``'s features as a dict, or None if it has none."""
        if self.xs is not None:
            return self.xs[row]
        if not self.has_features[row]:
            return None
        return dict(zip(self.feature_names, self.X[row].tolist(), strict=True))

    def matrix(self, bank: ColumnSpace) -> np.ndarray:
        """``X`` laid out in ``bank``'s feature columns (adding columns for new names).

        Zeros where a row lacks a feature, as :class:`oml.bank.Bank` expects.
        """
        cols = bank.columns(self.feature_names)
        width = len(bank.features)
        d = len(self.feature_names)
        if width == d and np.array_equal(cols, np.arange(d)):
            return self.X
        out = np.zeros((len(self), width))
        out[:, cols] = self.X
        return out


@dataclass
class Parsed:
    """What a format hands to the common assembly: the messages it could read, as columns."""

    index: list[int] | None  # None: every message
    ids: list[Any]
    keys: list[Any]
    features: list[Any]
    labels: list[Any]
    timestamps: list[Any]
    errors: list[BadMessage]
    check_floats: bool  # the format can produce NaN/inf labels (JSON cannot)
    feature_struct: FeatureStruct | None = None  # features decoded into this struct type
    typed: bool = False  # ids all str, keys str or None, timestamps int or None
    bounded: bool = False  # the parser bounded id, key and label lengths and feature counts


@dataclass(frozen=True)
class FeatureStruct:
    """A msgspec struct type for features with exactly these names (any order on the wire)."""

    type: type
    names: tuple[str, ...]

    @classmethod
    def for_names(cls, names: Sequence[str]) -> FeatureStruct:
        attrs = [f"f{i}" for i in range(len(names))]
        struct = msgspec.defstruct(
            "Features",
            [(a, float) for a in attrs],
            rename=dict(zip(attrs, names, strict=True)),
            forbid_unknown_fields=True,
            gc=False,
        )
        return cls(struct, tuple(names))

    def as_dict(self, value: Any) -> dict[str, float]:
        return dict(zip(self.names, msgspec.structs.astuple(value), strict=True))


def empty_parsed(check_floats: bool) -> Parsed:
    return Parsed([], [], [], [], [], [], [], check_floats)


def all_of(values: list[Any], kind: type) -> bool:
    """Every value is exactly of type ``kind`` (no subclasses: bool is not an int here)."""
    return not values or set(map(type, values)) == {kind}


def not_none(column: list[Any], n_none: int) -> np.ndarray:
    """Which values are not None (``n_none`` of them are)."""
    m = len(column)
    if n_none == 0:
        return np.ones(m, dtype=bool)
    if n_none == m:
        return np.zeros(m, dtype=bool)
    return np.fromiter(map(is_not, column, repeat(None)), bool, m)


def pick(column: list[Any], rows: list[int]) -> list[Any]:
    return [column[i] for i in rows]


def without(
    gone: Iterable[int], arrays: tuple[np.ndarray, ...], lists: tuple[list[Any], ...]
) -> tuple[tuple[np.ndarray, ...], tuple[list[Any], ...]]:
    """The parallel columns without the rows ``gone``."""
    keep = np.ones(len(lists[0]), dtype=bool)
    keep[list(gone)] = False
    rows = np.flatnonzero(keep).tolist()
    return tuple(a[keep] for a in arrays), tuple(pick(c, rows) for c in lists)


def concat(
    parts: list[DecodedBatch],
    errors: list[BadMessage],
    source_partitions: np.ndarray | None = None,
    source_offsets: np.ndarray | None = None,
) -> DecodedBatch:
    """One batch of the rows of ``parts`` (in that order), with ``errors``: features laid out in
    the union of their names (``xs`` then holds each row's dict unless all rows agree)."""
    rows = [(b, r) for b in parts for r in range(len(b))]
    feats = [b.features(r) for b, r in rows]
    present = [f for f in feats if f is not None]
    columns: dict[str, int] = {}
    for f in present:
        for name in f:
            columns.setdefault(name, len(columns))
    X = np.zeros((len(rows), len(columns)))
    for i, row in enumerate(feats):
        if row is not None:
            X[i, [columns[n] for n in row]] = list(row.values())
    names = list(columns)
    uniform = all(list(f) == names for f in present)
    errors.sort(key=itemgetter(0))

    def cat(attr: str, dtype: Any) -> np.ndarray:
        return np.concatenate([getattr(b, attr) for b in parts]) if parts else np.empty(0, dtype)

    return DecodedBatch(
        index=cat("index", np.intp),
        event_ids=[b.event_ids[r] for b, r in rows],
        keys=[b.keys[r] for b, r in rows],
        partitions=cat("partitions", np.int32),
        offsets=cat("offsets", np.int64),
        has_label=cat("has_label", bool),
        labels=[b.labels[r] for b, r in rows],
        has_features=cat("has_features", bool),
        feature_names=names,
        X=X,
        xs=None if uniform else feats,
        timestamps=cat("timestamps", np.int64),
        errors=errors,
        clamped=sum(b.clamped for b in parts),
        source_partitions=source_partitions,
        source_offsets=source_offsets,
    )


Columns = tuple[list[Any], list[Any], list[Any], list[Any], list[Any]]


def struct_columns(events: list[Any]) -> Columns:
    """The five columns of decoded structs (list comprehensions beat zip(*astuple) here)."""
    return (
        [e.event_id for e in events],
        [e.key for e in events],
        [e.features for e in events],
        [e.label for e in events],
        [e.timestamp for e in events],
    )


def dict_columns(records: list[dict[str, Any]], f: FieldNames) -> Columns:
    """The five columns of decoded Avro records."""
    i, k, x, y, t = f.event_id, f.key, f.features, f.label, f.timestamp
    return (
        [r[i] for r in records],
        [r[k] for r in records],
        [r[x] for r in records],
        [r[y] for r in records],
        [r[t] for r in records],
    )
