"""Input events: a batch decoder that returns columns, and the encoder producers use.

An input message is either an event to score or feedback for one (JSON shown; the field names
are configurable in ``[messages.fields]``, Avro has the same shape, see ``oml/schemas``)::

    {"event_id": "e1", "key": "user-7", "features": {"x": 1.5, "y": 0}, "timestamp": 1700000000000}
    {"event_id": "e1", "key": "user-7", "label": true}

``features`` is an object of numbers or a list of numbers; ``timestamp`` is optional, epoch
milliseconds or an RFC 3339 / ISO-8601 string (``"2024-05-01T12:00:00Z"``; no offset means UTC).
A message with a non-null ``label`` is feedback (it may carry features too); one without needs
features.  ``key`` may be left out when the Kafka message key is the model key.

The decoder works a batch at a time and returns a :class:`DecodedBatch` of columns: ids, keys,
labels, a dense float64 feature matrix, timestamps.  Each bad message becomes one
:class:`~oml.codecs.errors.BadMessage` (index, reason, message) and the others decode normally.

>>> decoder = JsonEventDecoder()
>>> batch = decoder.decode_batch([
...     b'{"event_id": "e1", "key": "a", "features": {"x": 1.5, "y": 2}}',
...     b'{"event_id": "e2", "key": "b", "features": {"x": NaN, "y": 2}}',
...     b'{"event_id": "e0", "key": "a", "label": true}',
... ])
>>> batch.event_ids, batch.feature_names, batch.X.tolist(), batch.labels
(['e1', 'e0'], ['x', 'y'], [[1.5, 2.0], [0.0, 0.0]], [None, True])
>>> batch.errors
[BadMessage(index=1, reason='not_finite', message="feature 'x' is nan")]
"""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, compress, repeat
from operator import is_not, itemgetter
from typing import TYPE_CHECKING, Any, Protocol

import fastavro
import msgspec
import numpy as np
from fastavro.read import SchemaResolutionError

from oml.codecs import avro
from oml.codecs._util import gc_paused, message_column, message_ints
from oml.codecs.errors import (
    BAD_LABEL,
    MALFORMED,
    MISSING_FIELD,
    NOT_FINITE,
    REGISTRY_UNAVAILABLE,
    SCHEMA_MISMATCH,
    TOO_DEEP,
    WRONG_FEATURE_COUNT,
    BadMessage,
    CodecError,
    internal_error,
)
from oml.codecs.outputs import MetricsCodec, PredictionCodec
from oml.codecs.schema_registry import (
    HEADER_SIZE,
    MAGIC_BYTE,
    WriterSchemas,
    frame,
    make_registry_client,
    register,
)
from oml.config import Config, FieldNames, MessagesConfig

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

Label = bool | int | float | str
Features = dict[str, float] | list[float]

NO_TIMESTAMP = -1
"""The timestamp of an event with none in its body and no Kafka timestamp given."""

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64_MAX = 2**63 - 1


class Event(msgspec.Struct, omit_defaults=True, gc=False):
    """One input message as a producer writes it (``timestamp`` in epoch milliseconds)."""

    event_id: str
    key: str
    features: Features | None = None
    label: Label | None = None
    timestamp: int | None = None


class ColumnSpace(Protocol):
    """What :meth:`DecodedBatch.matrix` needs of a bank: its feature columns."""

    features: list[Hashable]

    def columns(self, names: Sequence[Hashable]) -> np.ndarray: ...


@dataclass(eq=False)
class DecodedBatch:
    """The good messages of a batch, as columns; row ``i`` came from input ``index[i]``.

    Attributes:
        index: (m,) intp, the position of each row's message in the decoded batch.
        event_ids, keys: (m,) str.
        partitions: (m,) int32 Kafka partition of each row (-1 if the caller gave none).
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
    """

    index: np.ndarray
    event_ids: list[str]
    keys: list[str]
    partitions: np.ndarray
    has_label: np.ndarray
    labels: list[Label | None]
    has_features: np.ndarray
    feature_names: list[str]
    X: np.ndarray
    xs: list[dict[str, float] | None] | None
    timestamps: np.ndarray
    errors: list[BadMessage] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.event_ids)

    @property
    def uniform(self) -> bool:
        """True when ``X`` and ``feature_names`` describe every row exactly (``xs`` is None)."""
        return self.xs is None

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

    def take(self, rows: np.ndarray | Sequence[int]) -> DecodedBatch:
        """The batch of the given rows (``errors`` is left empty)."""
        rows = np.asarray(rows, dtype=np.intp)
        picked = rows.tolist()
        return DecodedBatch(
            index=self.index[rows],
            event_ids=[self.event_ids[i] for i in picked],
            keys=[self.keys[i] for i in picked],
            partitions=self.partitions[rows],
            has_label=self.has_label[rows],
            labels=[self.labels[i] for i in picked],
            has_features=self.has_features[rows],
            feature_names=self.feature_names,
            X=self.X[rows],
            xs=None if self.xs is None else [self.xs[i] for i in picked],
            timestamps=self.timestamps[rows],
        )


@dataclass
class _Parsed:
    """What a format hands to the common assembly: the messages it could read, as columns."""

    index: list[int] | None  # None: every message
    ids: list[Any]
    keys: list[Any]
    features: list[Any]
    labels: list[Any]
    timestamps: list[Any]
    errors: list[BadMessage]
    check_floats: bool  # the format can produce NaN/inf labels (JSON cannot)
    feature_struct: _FeatureStruct | None = None  # features decoded into this struct type
    typed: bool = False  # ids all str, keys str or None, timestamps int or None


@dataclass(frozen=True)
class _FeatureStruct:
    """A msgspec struct type for features with exactly these names (any order on the wire)."""

    type: type
    names: tuple[str, ...]

    @classmethod
    def for_names(cls, names: Sequence[str]) -> _FeatureStruct:
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


def _empty_parsed(check_floats: bool) -> _Parsed:
    return _Parsed([], [], [], [], [], [], [], check_floats)


KafkaTimestamps = Callable[[], np.ndarray]
KafkaKeys = Callable[[], Sequence[bytes | str | None]]


class EventDecoder:
    """Decodes input messages a batch at a time; build one with :func:`event_decoder`.

    ``n_features`` is the expected length of list-shaped features: ``len(feature_names)`` if
    configured, else fixed by the first list the decoder sees (set it yourself to pin it, e.g.
    from recovered model state).  A list of another length is ``wrong_feature_count``.

    A decoder keeps a little state (that length; for JSON, the feature names of the last
    uniform batch, which lets it decode features straight into a struct), so use one per
    consumer loop, not one across threads.
    """

    def __init__(
        self, fields: FieldNames | None = None, feature_names: Sequence[str] | None = None
    ) -> None:
        self.fields = fields or FieldNames()
        self.feature_names = tuple(feature_names) if feature_names else None
        self.n_features: int | None = len(self.feature_names) if self.feature_names else None
        self._position_names: list[str] = []

    # ---- public
    def decode_batch(
        self,
        values: Sequence[bytes | None],
        *,
        timestamps: Sequence[int] | np.ndarray | None = None,
        keys: Sequence[bytes | str | None] | None = None,
        partitions: Sequence[int] | np.ndarray | None = None,
    ) -> DecodedBatch:
        """Decode message values; never raises for bad input (see ``DecodedBatch.errors``).

        ``timestamps``: the Kafka timestamps (ms, -1 for none), used for messages without one.
        ``keys``: the Kafka message keys, used for messages without a key field.
        ``partitions``: copied to ``DecodedBatch.partitions``.
        All three, if given, are parallel to ``values``.

        Raises :class:`CodecError` (reason ``registry_unavailable``) only if the schema
        registry cannot be asked for a writer schema: retry the batch or stop.  The garbage
        collector is paused while it runs (see :func:`oml.codecs._util.gc_paused`).
        """
        kafka_ts = None
        if timestamps is not None:
            ts = np.asarray(timestamps, dtype=np.int64)
            kafka_ts = lambda: ts  # noqa: E731
        kafka_keys = None if keys is None else (lambda: keys)
        parts = None if partitions is None else np.asarray(partitions, dtype=np.int32)
        return self._decode_guarded(values, kafka_ts, kafka_keys, parts)

    def decode_messages(self, messages: Sequence[Any]) -> DecodedBatch:
        """Decode ``confluent_kafka.Message`` objects (their value, key, timestamp, partition).

        Keys and timestamps are read from the messages only when some body lacks them.
        """
        values = message_column(messages, "value")
        partitions = message_ints(messages, "partition", np.int32)

        def kafka_ts() -> np.ndarray:
            return np.fromiter(
                (t if kind else NO_TIMESTAMP for kind, t in (m.timestamp() for m in messages)),
                np.int64,
                len(messages),
            )

        def kafka_keys() -> list[bytes | None]:
            return [m.key() for m in messages]

        return self._decode_guarded(values, kafka_ts, kafka_keys, partitions)

    # ---- fault isolation
    def _decode_guarded(
        self,
        values: Sequence[bytes | None],
        kafka_ts: KafkaTimestamps | None,
        kafka_keys: KafkaKeys | None,
        partitions: np.ndarray | None,
    ) -> DecodedBatch:
        """The batch at once; if that raises unexpectedly, message by message, so that only the
        message at fault becomes a dead letter (``internal_error``)."""
        with gc_paused():
            try:
                return self._assemble(
                    len(values), self._parse(values), kafka_ts, kafka_keys, partitions
                )
            except CodecError as exc:
                if exc.reason == REGISTRY_UNAVAILABLE:
                    raise
            except Exception:  # noqa: S110  # pinned to its message below
                pass
            return self._decode_each(values, kafka_ts, kafka_keys, partitions)

    def _decode_each(
        self,
        values: Sequence[bytes | None],
        kafka_ts: KafkaTimestamps | None,
        kafka_keys: KafkaKeys | None,
        partitions: np.ndarray | None,
    ) -> DecodedBatch:
        ts = None if kafka_ts is None else kafka_ts()
        ks = None if kafka_keys is None else kafka_keys()
        parts: list[DecodedBatch] = []
        errors: list[BadMessage] = []
        for i, value in enumerate(values):
            one_ts = None if ts is None else (lambda i=i: ts[i : i + 1])  # type: ignore[misc]
            one_key = None if ks is None else (lambda i=i: [ks[i]])  # type: ignore[misc]
            one_part = None if partitions is None else partitions[i : i + 1]
            try:
                one = self._assemble(1, self._parse([value]), one_ts, one_key, one_part)
            except CodecError as exc:
                if exc.reason == REGISTRY_UNAVAILABLE:
                    raise
                errors.append(internal_error(i, exc))
                continue
            except Exception as exc:  # the message at fault: a dead letter, never a crash
                errors.append(internal_error(i, exc))
                continue
            errors.extend(e._replace(index=i) for e in one.errors)
            if len(one):
                one.index[:] = i
                parts.append(one)
        return _concat(parts, errors)

    # ---- the format's part
    def _parse(self, values: Sequence[bytes | None]) -> _Parsed:
        raise NotImplementedError

    # ---- the common part
    def _assemble(
        self,
        n_values: int,
        p: _Parsed,
        kafka_ts: KafkaTimestamps | None,
        kafka_keys: KafkaKeys | None,
        partitions: np.ndarray | None,
    ) -> DecodedBatch:
        errors = p.errors
        if p.index is None:
            index = np.arange(n_values, dtype=np.intp)
        else:
            index = np.array(p.index, dtype=np.intp)
        ids, keys, feats, labels, tss = p.ids, p.keys, p.features, p.labels, p.timestamps
        m = len(ids)
        bad: dict[int, tuple[str, str]] = {}

        if not (p.typed or _all_of(ids, str)):
            ids = [x if type(x) is str else str(x) for x in ids]
        if None in keys if p.typed else not _all_of(keys, str):
            keys = self._fix_keys(keys, index, kafka_keys, bad)
        n_unlabeled = labels.count(None)
        if p.check_floats and n_unlabeled < m:
            for i, y in enumerate(labels):
                if type(y) is float and not math.isfinite(y):
                    bad[i] = (BAD_LABEL, f"label is {y}")
        n_featureless = feats.count(None)
        has_label = _present(labels, n_unlabeled)
        has_features = _present(feats, n_featureless)
        if n_featureless and n_unlabeled:
            for i in np.flatnonzero(~(has_label | has_features)).tolist():
                bad.setdefault(i, (MISSING_FIELD, self._no_features_message))
        if n_featureless < m:
            present = list(compress(feats, has_features.tolist())) if n_featureless else feats
            self._check_feature_shapes(feats, present, bad, p.feature_struct)
        stamps = self._timestamps(tss, index, kafka_ts, bad, p.typed)

        if bad:
            errors.extend(BadMessage(int(index[i]), r, text) for i, (r, text) in bad.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = _without(
                bad, (index, stamps, has_label, has_features), (ids, keys, labels, feats)
            )

        names, X, xs, not_finite = self._features(feats, has_features, p.feature_struct)
        if not_finite:  # rare: drop those rows and lay the matrix out again without them
            errors.extend(BadMessage(int(index[i]), NOT_FINITE, t) for i, t in not_finite.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = _without(
                not_finite, (index, stamps, has_label, has_features), (ids, keys, labels, feats)
            )
            names, X, xs, _ = self._features(feats, has_features, p.feature_struct)

        errors.sort(key=itemgetter(0))
        return DecodedBatch(
            index=index,
            event_ids=ids,
            keys=keys,
            partitions=(
                np.full(len(ids), -1, dtype=np.int32) if partitions is None else partitions[index]
            ),
            has_label=has_label,
            labels=labels,
            has_features=has_features,
            feature_names=names,
            X=X,
            xs=xs,
            timestamps=stamps,
            errors=errors,
        )

    @property
    def _no_features_message(self) -> str:
        f = self.fields
        return f"an event without {f.label!r} needs {f.features!r}"

    def _fix_keys(
        self,
        keys: list[Any],
        index: np.ndarray,
        kafka_keys: KafkaKeys | None,
        bad: dict[int, tuple[str, str]],
    ) -> list[str]:
        fallback = kafka_keys() if kafka_keys is not None and None in keys else None
        out: list[str] = []
        for i, k in enumerate(keys):
            if type(k) is str:
                out.append(k)
            elif k is not None:
                out.append(str(k))
            else:
                raw = None if fallback is None else fallback[int(index[i])]
                if isinstance(raw, bytes):
                    try:
                        raw = raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raw = None
                if isinstance(raw, str):
                    out.append(raw)
                else:
                    out.append("")
                    bad[i] = (MISSING_FIELD, f"no {self.fields.key!r} and no usable Kafka key")
        return out

    def _check_feature_shapes(
        self,
        feats: list[Any],
        present: list[Any],
        bad: dict[int, tuple[str, str]],
        struct: _FeatureStruct | None,
    ) -> None:
        """Empty features, and list features of the wrong length (fixing the length if unset).
        ``present`` is ``feats`` without its Nones.

        Whole-column checks first; the row-by-row loops run only when something is off.
        """
        kinds = set(map(type, present))
        if struct is not None and struct.type in kinds:  # a struct is never empty
            kinds.discard(struct.type)
            if not kinds:
                return
            present = [f for f in present if type(f) is not struct.type]
        if present and min(map(len, present)) == 0:
            for i, f in enumerate(feats):
                if f is not None and not f:
                    bad[i] = (MISSING_FIELD, f"{self.fields.features!r} is empty")
        if list not in kinds:
            return
        if self.n_features is None:
            self.n_features = next(
                (len(f) for i, f in enumerate(feats) if type(f) is list and f and i not in bad),
                None,
            )
        n = self.n_features
        if n is None or {len(f) for f in present if type(f) is list} <= {0, n}:
            return
        for i, f in enumerate(feats):
            if type(f) is list and f and len(f) != n:
                bad.setdefault(
                    i, (WRONG_FEATURE_COUNT, f"{len(f)} feature values where {n} are expected")
                )

    def _list_names(self, n: int) -> list[str]:
        if self.feature_names is not None and len(self.feature_names) == n:
            return list(self.feature_names)
        while len(self._position_names) < n:
            self._position_names.append(str(len(self._position_names)))
        return self._position_names[:n]

    def _features(
        self, feats: list[Any], has: np.ndarray, struct: _FeatureStruct | None = None
    ) -> tuple[list[str], np.ndarray, list[Any] | None, dict[int, str]]:
        """(names, X, xs or None, {row: not-finite message}); ``has``: which feats are not
        None."""
        m = len(feats)
        n_none = m - int(np.count_nonzero(has))
        if n_none == m:
            return [], np.zeros((m, 0)), None, {}
        present = list(compress(feats, has.tolist())) if n_none else feats
        k = len(present)
        kinds = set(map(type, present))
        xs: list[Any] | None = None
        if struct is not None and kinds == {struct.type}:
            names = list(struct.names)
            flat = chain.from_iterable(map(msgspec.structs.astuple, present))
            values = np.fromiter(flat, np.float64, k * len(names)).reshape(k, len(names))
        elif kinds == {dict}:
            names = list(present[0])
            d = len(names)
            if list(chain.from_iterable(present)) == names * k:  # same names, same order
                flat = chain.from_iterable(map(dict.values, present))
                values = np.fromiter(flat, np.float64, k * d).reshape(k, d)
                self._uniform_names(names)
            else:
                names, values, xs = self._scatter(present, feats)
        elif kinds == {list}:
            values = np.array(present, dtype=np.float64)
            names = self._list_names(values.shape[1])
        else:
            as_dicts = [
                dict(zip(self._list_names(len(f)), f, strict=True))
                if type(f) is list
                else f
                if type(f) is dict
                else struct.as_dict(f)  # type: ignore[union-attr]
                for f in present
            ]
            full = iter(as_dicts)
            names, values, xs = self._scatter(
                as_dicts, [None if f is None else next(full) for f in feats]
            )

        not_finite: dict[int, str] = {}
        finite = np.isfinite(values)
        if not finite.all():
            rows_present = np.flatnonzero(has)
            for r, c in zip(*np.nonzero(~finite), strict=True):
                row = int(rows_present[r])
                if row not in not_finite:
                    not_finite[row] = f"feature {names[c]!r} is {values[r, c]}"
        if n_none:
            X = np.zeros((m, len(names)))
            X[has] = values
        else:
            X = values
        return names, X, xs, not_finite

    def _uniform_names(self, names: list[str]) -> None:
        """Told the names of a batch whose dict features all had them, in that order."""

    @staticmethod
    def _scatter(
        present: list[dict[str, float]], feats: list[Any]
    ) -> tuple[list[str], np.ndarray, list[Any]]:
        """Rows with differing feature names: the union of names, zeros where absent."""
        columns: dict[str, int] = {}
        for f in present:
            for name in f:
                if name not in columns:
                    columns[name] = len(columns)
        values = np.zeros((len(present), len(columns)))
        for r, f in enumerate(present):
            values[r, [columns[n] for n in f]] = list(f.values())
        xs = [f if type(f) is dict else None for f in feats]
        return list(columns), values, xs

    def _timestamps(
        self,
        tss: list[Any],
        index: np.ndarray,
        kafka_ts: KafkaTimestamps | None,
        bad: dict[int, tuple[str, str]],
        typed: bool = False,
    ) -> np.ndarray:
        m = len(tss)
        if None not in tss if typed else _all_of(tss, int):
            try:
                out = np.array(tss, dtype=np.int64)
            except OverflowError:
                pass
            else:
                if m == 0 or out.min() >= 0:
                    return out
        n_none = tss.count(None)
        fallback: np.ndarray | None = None
        if n_none:
            fallback = kafka_ts()[index] if kafka_ts is not None else None
            if n_none == m:
                return fallback if fallback is not None else np.full(m, NO_TIMESTAMP, np.int64)
        out = np.empty(m, dtype=np.int64)
        for i, t in enumerate(tss):
            if t is None:
                out[i] = NO_TIMESTAMP if fallback is None else fallback[i]
                continue
            if isinstance(t, dt.datetime):
                if t.tzinfo is None:
                    t = t.replace(tzinfo=dt.UTC)
                t = (t - _EPOCH) // dt.timedelta(milliseconds=1)
            elif type(t) is float:
                t = math.floor(t) if math.isfinite(t) else -1
            if type(t) is not int or not 0 <= t <= _INT64_MAX:
                out[i] = NO_TIMESTAMP
                bad.setdefault(
                    i, (SCHEMA_MISMATCH, f"{self.fields.timestamp!r} {tss[i]!r} is out of range")
                )
            else:
                out[i] = t
        return out


def _all_of(values: list[Any], kind: type) -> bool:
    """Every value is exactly of type ``kind`` (no subclasses: bool is not an int here)."""
    return not values or set(map(type, values)) == {kind}


def _present(column: list[Any], n_none: int) -> np.ndarray:
    """Which values are not None (``n_none`` of them are)."""
    m = len(column)
    if n_none == 0:
        return np.ones(m, dtype=bool)
    if n_none == m:
        return np.zeros(m, dtype=bool)
    return np.fromiter(map(is_not, column, repeat(None)), bool, m)


def _pick(column: list[Any], rows: list[int]) -> list[Any]:
    return [column[i] for i in rows]


def _without(
    gone: Iterable[int], arrays: tuple[np.ndarray, ...], lists: tuple[list[Any], ...]
) -> tuple[tuple[np.ndarray, ...], tuple[list[Any], ...]]:
    """The parallel columns without the rows ``gone``."""
    keep = np.ones(len(lists[0]), dtype=bool)
    keep[list(gone)] = False
    rows = np.flatnonzero(keep).tolist()
    return tuple(a[keep] for a in arrays), tuple(_pick(c, rows) for c in lists)


def _concat(parts: list[DecodedBatch], errors: list[BadMessage]) -> DecodedBatch:
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
        has_label=cat("has_label", bool),
        labels=[b.labels[r] for b, r in rows],
        has_features=cat("has_features", bool),
        feature_names=names,
        X=X,
        xs=None if uniform else feats,
        timestamps=cat("timestamps", np.int64),
        errors=errors,
    )


Columns = tuple[list[Any], list[Any], list[Any], list[Any], list[Any]]


def _struct_columns(events: list[Any]) -> Columns:
    """The five columns of decoded structs (list comprehensions beat zip(*astuple) here)."""
    return (
        [e.event_id for e in events],
        [e.key for e in events],
        [e.features for e in events],
        [e.label for e in events],
        [e.timestamp for e in events],
    )


def _dict_columns(records: list[dict[str, Any]], f: FieldNames) -> Columns:
    """The five columns of decoded Avro records."""
    i, k, x, y, t = f.event_id, f.key, f.features, f.label, f.timestamp
    return (
        [r[i] for r in records],
        [r[k] for r in records],
        [r[x] for r in records],
        [r[y] for r in records],
        [r[t] for r in records],
    )


# --------------------------------------------------------------------------------------------
# JSON


class JsonEventDecoder(EventDecoder):
    """JSON input (one object per message), optionally behind a Confluent JSON Schema header.

    The fast path decodes every message into a typed msgspec struct; only when that fails does
    it go message by message to find and explain the bad ones.  JSON has no NaN, but ``NaN``,
    ``Infinity`` and ``1e999`` are caught (``not_finite`` in features, ``bad_label`` as a label).
    """

    def __init__(
        self, fields: FieldNames | None = None, feature_names: Sequence[str] | None = None
    ) -> None:
        super().__init__(fields, feature_names)
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            self._event_struct(dict[str, float])
        )
        self._decode = decoder.decode
        # the learned fast path: features decoded straight into a struct of the names last seen
        self._fast: tuple[_FeatureStruct, Callable[[Any], Any]] | None = None
        self._fast_skip = 0  # batches to go without trying the fast path
        self._fast_penalty = 1

    def _event_struct(self, features: Any, typed: bool = False) -> type:
        """The struct messages decode into; ``typed`` (the fast path) takes only string ids and
        keys and integer timestamps, which spares the type checks of the columns."""
        f = self.fields
        return msgspec.defstruct(
            "JsonEvent",
            [
                ("event_id", str if typed else str | int),
                ("key", str | None if typed else str | int | None, None),
                ("features", features | list[float] | None, None),
                ("label", bool | int | float | str | None, None),
                ("timestamp", int | None if typed else int | float | dt.datetime | None, None),
            ],
            rename={
                "event_id": f.event_id,
                "key": f.key,
                "features": f.features,
                "label": f.label,
                "timestamp": f.timestamp,
            },
            gc=False,
        )

    def _uniform_names(self, names: list[str]) -> None:
        if self._fast is None or list(self._fast[0].names) != names:
            try:
                struct = _FeatureStruct.for_names(names)
            except (ValueError, TypeError):  # msgspec refuses names with quotes or control chars
                self._fast = None
                return
            self._fast = (
                struct,
                msgspec.json.Decoder(self._event_struct(struct.type, typed=True)).decode,
            )

    def _parse(self, values: Sequence[bytes | None]) -> _Parsed:
        """Try, in order: the learned fast path (features straight into a struct, when the last
        uniform batch had the same names), every message into the general struct, and only
        then message by message to find and explain the bad ones."""
        if not values:
            return _empty_parsed(False)
        first = values[0]
        if first is not None and first[:1] == b"\x00":  # Confluent-framed JSON
            values = [v[HEADER_SIZE:] if v is not None and v[:1] == b"\x00" else v for v in values]
        if self._fast is not None:
            if self._fast_skip:
                self._fast_skip -= 1
            else:
                struct, decode = self._fast
                try:
                    events = list(map(decode, values))  # type: ignore[arg-type]
                except Exception:
                    # other names, or a bad message: back off (1, 2, 4... batches, up to 64)
                    self._fast_skip = self._fast_penalty
                    self._fast_penalty = min(self._fast_penalty * 2, 64)
                else:
                    self._fast_penalty = 1
                    return _Parsed(None, *_struct_columns(events), [], False, struct, True)
        try:
            events = list(map(self._decode, values))  # type: ignore[arg-type]  # None: TypeError
        except Exception:  # found and explained message by message
            return self._parse_each(values)
        return _Parsed(None, *_struct_columns(events), [], False)

    def _parse_each(self, values: Sequence[bytes | None]) -> _Parsed:
        events: list[Any] = []
        index: list[int] = []
        errors: list[BadMessage] = []
        for i, value in enumerate(values):
            if value is None:
                errors.append(BadMessage(i, MALFORMED, "null value (a tombstone)"))
                continue
            if value[:1] == b"\x00":
                value = value[HEADER_SIZE:]
            try:
                events.append(self._decode(value))
            except msgspec.ValidationError as exc:
                errors.append(BadMessage(i, self._invalid_reason(str(exc)), str(exc)))
                continue
            except (msgspec.DecodeError, TypeError) as exc:
                errors.append(BadMessage(i, *self._undecodable(value, exc)))
                continue
            except RecursionError:
                errors.append(BadMessage(i, TOO_DEEP, "JSON nested deeper than the parser allows"))
                continue
            except Exception as exc:  # never a crash: this message's dead letter
                errors.append(internal_error(i, exc))
                continue
            index.append(i)
        if not events:
            p = _empty_parsed(False)
            p.errors = errors
            return p
        return _Parsed(index, *_struct_columns(events), errors, False)

    def _invalid_reason(self, text: str) -> str:
        if text.startswith("Object missing required field"):
            return MISSING_FIELD
        _, _, path = text.partition(" - at `")
        path = path.rstrip("`")
        if _at(path, self.fields.label):
            return BAD_LABEL
        if _at(path, self.fields.features) and text.startswith("Number out of range"):
            return NOT_FINITE
        return SCHEMA_MISMATCH

    def _undecodable(self, value: Any, exc: Exception) -> tuple[str, str]:
        """Why msgspec could not parse it: non-finite numbers (stdlib json reads NaN) or not
        JSON at all."""
        try:
            obj = json.loads(value)
        except RecursionError:
            return TOO_DEEP, "JSON nested deeper than the parser allows"
        except (ValueError, TypeError):
            return MALFORMED, f"not JSON: {exc}"
        if isinstance(obj, dict):
            f = obj.get(self.fields.features)
            items: Any = ()
            if isinstance(f, dict):
                items = f.items()
            elif isinstance(f, list):
                items = enumerate(f)
            for name, v in items:
                if isinstance(v, float) and not math.isfinite(v):
                    return NOT_FINITE, f"feature {name!r} is {v}"
            y = obj.get(self.fields.label)
            if isinstance(y, float) and not math.isfinite(y):
                return BAD_LABEL, f"label is {y}"
        return MALFORMED, f"not JSON: {exc}"


def _at(path: str, name: str) -> bool:
    head = f"$.{name}"
    return path == head or path.startswith((head + "[", head + "."))


# --------------------------------------------------------------------------------------------
# Avro


class AvroEventDecoder(EventDecoder):
    """Avro input: schemaless bodies in oml's event schema, or, with a schema registry, the
    Confluent wire format with any writer schema that resolves to it (writer schemas are
    fetched once per id; other field names via ``[messages.fields]``)."""

    def __init__(
        self,
        fields: FieldNames | None = None,
        feature_names: Sequence[str] | None = None,
        registry: SchemaRegistryClient | None = None,
    ) -> None:
        super().__init__(fields, feature_names)
        avro.check_field_names(self.fields)
        own = avro.plain_longs(avro.event_schema(self.fields))
        self._own_canonical = avro.canonical(own)
        self._writer = avro.parse(own)
        self._writers = None if registry is None else WriterSchemas(registry, self._prepare)

    def _prepare(self, writer: dict[str, Any]) -> tuple[Any, Any]:
        """(writer, reader) for fastavro: no reader (no resolution) when it is our schema."""
        plain = avro.plain_longs(writer)
        if avro.canonical(plain) == self._own_canonical:
            return self._writer, None
        name = plain.get("name") if isinstance(plain, dict) else None
        namespace = plain.get("namespace") if isinstance(plain, dict) else None
        reader = avro.event_reader_schema(self.fields, name, namespace)
        return avro.parse(plain), avro.parse(reader)

    def _parse(self, values: Sequence[bytes | None]) -> _Parsed:
        read = fastavro.schemaless_reader
        stream_of = io.BytesIO
        writers = self._writers
        records: list[Any] = []
        index: list[int] = []
        errors: list[BadMessage] = []
        writer, reader = self._writer, None
        for i, value in enumerate(values):
            if value is None:
                errors.append(BadMessage(i, MALFORMED, "null value (a tombstone)"))
                continue
            body = value
            if writers is not None:
                if len(value) < HEADER_SIZE or value[0] != MAGIC_BYTE:
                    errors.append(BadMessage(i, MALFORMED, "not in the Confluent wire format"))
                    continue
                try:
                    writer, reader = writers.get(int.from_bytes(value[1:HEADER_SIZE], "big"))
                except CodecError as exc:
                    if exc.reason == REGISTRY_UNAVAILABLE:
                        raise
                    errors.append(BadMessage(i, exc.reason, str(exc)))
                    continue
                body = value[HEADER_SIZE:]
            stream = stream_of(body)
            try:
                record = read(stream, writer, reader)
            except SchemaResolutionError as exc:
                errors.append(BadMessage(i, SCHEMA_MISMATCH, f"writer schema does not fit: {exc}"))
                continue
            except Exception as exc:  # corrupt bytes surface as many exception types
                errors.append(BadMessage(i, MALFORMED, f"not Avro: {type(exc).__name__}: {exc}"))
                continue
            if stream.tell() != len(body):
                extra = len(body) - stream.tell()
                errors.append(BadMessage(i, MALFORMED, f"not Avro: {extra} bytes after the record"))
                continue
            records.append(record)
            index.append(i)
        if not records:
            p = _empty_parsed(True)
            p.errors = errors
            return p
        return _Parsed(
            None if not errors else index, *_dict_columns(records, self.fields), errors, True
        )


def event_decoder(
    config: Config | MessagesConfig, registry: SchemaRegistryClient | None = None
) -> EventDecoder:
    """The decoder for the configured format, field names and feature names.

    ``registry``: a schema-registry client (Avro then expects the Confluent wire format); by
    default one is made if ``schema_registry_url`` is set.
    """
    messages = config.messages if isinstance(config, Config) else config
    if messages.format == "json":
        return JsonEventDecoder(messages.fields, messages.feature_names)
    if registry is None:
        registry = make_registry_client(messages)
    return AvroEventDecoder(messages.fields, messages.feature_names, registry)


# --------------------------------------------------------------------------------------------
# encoding (for producers: tests, benchmarks, examples)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


class EventEncoder:
    """Turns :class:`Event` records into input messages of the configured format.

    >>> encoder = EventEncoder()
    >>> encoder(Event("e1", "a", {"x": 1.0}))
    b'{"event_id":"e1","key":"a","features":{"x":1.0}}'
    >>> JsonEventDecoder().decode_batch(encoder.encode_batch([Event("e1", "a", [1.0])])).X
    array([[1.]])
    """

    def __init__(
        self,
        fields: FieldNames | None = None,
        format: str = "json",
        *,
        registry: SchemaRegistryClient | None = None,
        subject: str | None = None,
    ) -> None:
        self.fields = f = fields or FieldNames()
        self.format = format
        if format == "json":
            self._wire = msgspec.defstruct(
                "JsonEventOut",
                [
                    ("event_id", str),
                    ("key", str),
                    ("features", Features | None, None),
                    ("label", Label | None, None),
                    ("timestamp", int | None, None),
                ],
                rename={
                    "event_id": f.event_id,
                    "key": f.key,
                    "features": f.features,
                    "label": f.label,
                    "timestamp": f.timestamp,
                },
                omit_defaults=True,
                gc=False,
            )
            self._json = msgspec.json.Encoder(enc_hook=_enc_hook)
        elif format == "avro":
            avro.check_field_names(f)
            schema = avro.event_schema(f)
            self._schema = avro.parse(schema)
            self._header = b""
            if registry is not None:
                if not subject:
                    raise ValueError("a subject is needed to register the event schema")
                self._header = frame(register(registry, subject, schema), b"")
        else:
            raise ValueError(f"unknown format {format!r}")

    @classmethod
    def from_config(
        cls, config: Config, registry: SchemaRegistryClient | None = None
    ) -> EventEncoder:
        """For the input topic of ``config`` (subject ``{input}-value`` with a registry)."""
        m = config.messages
        if registry is None and m.format == "avro":
            registry = make_registry_client(m)
        return cls(m.fields, m.format, registry=registry, subject=f"{config.topics.input}-value")

    def __call__(self, event: Event) -> bytes:
        return self.encode_batch([event])[0]

    def encode_batch(self, events: Sequence[Event]) -> list[bytes]:
        if self.format == "json":
            wire = self._wire
            records = [wire(e.event_id, e.key, e.features, e.label, e.timestamp) for e in events]
            if not records:
                return []
            out = self._json.encode_lines(records).split(b"\n")
            out.pop()
            return out
        f = self.fields
        write = fastavro.schemaless_writer
        result = []
        for e in events:
            features = e.features
            if isinstance(features, np.ndarray):
                features = features.tolist()
            label = e.label.item() if isinstance(e.label, np.generic) else e.label
            stream = io.BytesIO()
            stream.write(self._header)
            write(
                stream,
                self._schema,
                {
                    f.event_id: e.event_id,
                    f.key: e.key,
                    f.features: features,
                    f.label: label,
                    f.timestamp: e.timestamp,
                },
            )
            result.append(stream.getvalue())
        return result


# --------------------------------------------------------------------------------------------
# the service's set


class EventCodec:
    """Every codec the service loop uses, built once from the configuration.

    The input decoder and the prediction and metrics encoders share one schema-registry client
    (made from ``messages.schema_registry_url`` unless one is given).  With a registry and Avro,
    building it registers the output schemas under ``{topic}-value`` (a network call: it may
    raise :class:`CodecError` ``registry_unavailable``).  JSON output is never framed; JSON
    input may be (the Confluent header is skipped).

    >>> from oml.config import load_config
    >>> codec = EventCodec.from_config(load_config(None, {}, {}))
    >>> batch = codec.decoder.decode_batch([b'{"event_id": "e1", "key": "a", "features": [1]}'])
    >>> codec.predictions.encode_batch(batch.event_ids, batch.keys, [True], n_updates=[0],
    ...     event_timestamps=batch.timestamps, processed_timestamp=1, algorithm="scw")
    [b'{"event_id":"e1","key":"a","prediction":true,"proba":null,"score":null,"n_updates":0,"event_timestamp":null,"processed_timestamp":1,"algorithm":"scw"}']
    """

    def __init__(
        self, decoder: EventDecoder, predictions: PredictionCodec, metrics: MetricsCodec
    ) -> None:
        self.decoder = decoder
        self.predictions = predictions
        self.metrics = metrics

    @classmethod
    def from_config(
        cls, config: Config, registry: SchemaRegistryClient | None = None
    ) -> EventCodec:
        if registry is None and config.messages.format == "avro":
            registry = make_registry_client(config.messages)
        return cls(
            event_decoder(config, registry),
            PredictionCodec.from_config(config, registry),
            MetricsCodec.from_config(config, registry),
        )
