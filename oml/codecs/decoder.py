"""The common part of the input decoders: from a format's parsed columns to a DecodedBatch."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Sequence
from itertools import chain, compress
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np

from oml.codecs._util import gc_paused, message_column, message_ints
from oml.codecs.batch import (
    NO_TIMESTAMP,
    DecodedBatch,
    FeatureStruct,
    Parsed,
    all_of,
    concat,
    not_none,
    without,
)
from oml.codecs.errors import (
    BAD_LABEL,
    MISSING_FIELD,
    NOT_FINITE,
    REGISTRY_UNAVAILABLE,
    SCHEMA_MISMATCH,
    WRONG_FEATURE_COUNT,
    BadMessage,
    CodecError,
    internal_error,
)
from oml.config import FieldNames

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64_MAX = 2**63 - 1


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
        return concat(parts, errors)

    # ---- the format's part
    def _parse(self, values: Sequence[bytes | None]) -> Parsed:
        raise NotImplementedError

    # ---- the common part
    def _assemble(
        self,
        n_values: int,
        p: Parsed,
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

        if not (p.typed or all_of(ids, str)):
            ids = [x if type(x) is str else str(x) for x in ids]
        if None in keys if p.typed else not all_of(keys, str):
            keys = self._fix_keys(keys, index, kafka_keys, bad)
        n_unlabeled = labels.count(None)
        if p.check_floats and n_unlabeled < m:
            for i, y in enumerate(labels):
                if type(y) is float and not math.isfinite(y):
                    bad[i] = (BAD_LABEL, f"label is {y}")
        n_featureless = feats.count(None)
        has_label = not_none(labels, n_unlabeled)
        has_features = not_none(feats, n_featureless)
        if n_featureless and n_unlabeled:
            for i in np.flatnonzero(~(has_label | has_features)).tolist():
                bad.setdefault(i, (MISSING_FIELD, self._no_features_message))
        if n_featureless < m:
            present = list(compress(feats, has_features.tolist())) if n_featureless else feats
            self._check_feature_shapes(feats, present, bad, p.feature_struct)
        stamps = self._timestamps(tss, index, kafka_ts, bad, p.typed)

        if bad:
            errors.extend(BadMessage(int(index[i]), r, text) for i, (r, text) in bad.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = without(
                bad, (index, stamps, has_label, has_features), (ids, keys, labels, feats)
            )

        names, X, xs, not_finite = self._features(feats, has_features, p.feature_struct)
        if not_finite:  # rare: drop those rows and lay the matrix out again without them
            errors.extend(BadMessage(int(index[i]), NOT_FINITE, t) for i, t in not_finite.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = without(
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
        struct: FeatureStruct | None,
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
        self, feats: list[Any], has: np.ndarray, struct: FeatureStruct | None = None
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
        if None not in tss if typed else all_of(tss, int):
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

