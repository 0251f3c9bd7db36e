"""The common part of the input decoders: from a format's parsed columns to a DecodedBatch."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Sequence
from itertools import chain, compress
from operator import itemgetter
from typing import Any

import msgspec
import numpy as np

from oml.codecs._util import message_column, message_ints
from oml.codecs.batch import (
    NO_TIMESTAMP,
    Bad,
    DecodedBatch,
    FeatureStruct,
    Parsed,
    Source,
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
    TOO_LARGE,
    TOO_LONG,
    WRONG_FEATURE_COUNT,
    BadMessage,
    CodecError,
    internal_error,
)
from oml.codecs.limits import (
    ColumnBudget,
    FeatureWidth,
    Limits,
    check_lengths,
    check_times,
    longer_than,
)
from oml.config import FieldNames

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_INT64_MAX = 2**63 - 1


class EventDecoder:
    """Decodes input messages a batch at a time; build one with :func:`event_decoder`.

    Bounds (:class:`~oml.codecs.limits.Limits`, by default the configuration's defaults) are
    checked on every message: its size before it is parsed, then the lengths of its id, key
    and string label, its number of features, its event time against ``clock`` (seconds, as
    :func:`time.time`), and the names it would add to the decoder's column space.

    List-shaped features must have one length (:class:`~oml.codecs.limits.FeatureWidth`):
    ``n_features`` or ``len(feature_names)`` if configured, else restored with
    :meth:`restore_feature_count`, else the majority's.  A list of another length is
    ``wrong_feature_count``.

    A decoder keeps a little state (that width, the column space; for JSON, the feature names of
    the last uniform batch, which lets it decode features straight into a struct), so use one
    per consumer loop, not one across threads.
    """

    def __init__(
        self,
        fields: FieldNames | None = None,
        feature_names: Sequence[str] | None = None,
        *,
        limits: Limits | None = None,
        n_features: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fields = fields or FieldNames()
        self.feature_names = tuple(feature_names) if feature_names else None
        if self.feature_names and n_features not in (None, len(self.feature_names)):
            raise ValueError(f"{n_features} list features, but {len(self.feature_names)} names")
        self.limits = Limits() if limits is None else limits
        self.clock = clock
        self.width = FeatureWidth(len(self.feature_names) if self.feature_names else n_features)
        self.columns = ColumnBudget(self.limits.max_features)
        self._position_names: list[str] = []

    # ---- public
    @property
    def n_features(self) -> int | None:
        """The length list-shaped features must have, once known."""
        return self.width.known

    def restore_feature_count(self, n: int) -> None:
        """Pin the length of list-shaped features (e.g. from restored model state).

        Raises ValueError if another length is configured."""
        self.width.restore(n)

    def restore_feature_names(self, names: Iterable[str]) -> None:
        """Add the feature names restored models already have to the column space (so that the
        ``max_features`` cap counts them), whatever the cap."""
        self.columns.restore(str(n) for n in names)

    def decode_batch(
        self,
        values: Sequence[bytes | None],
        *,
        timestamps: Sequence[int] | np.ndarray | None = None,
        keys: Sequence[bytes | str | None] | None = None,
        partitions: Sequence[int] | np.ndarray | None = None,
        offsets: Sequence[int] | np.ndarray | None = None,
    ) -> DecodedBatch:
        """Decode message values; never raises for bad input (see ``DecodedBatch.errors``).

        ``timestamps``: the Kafka timestamps (ms, -1 for none), used for messages without one.
        ``keys``: the Kafka message keys, used for messages without a key field.
        ``partitions``, ``offsets``: copied to the batch, row by row.
        All four, if given, are parallel to ``values``.

        Raises :class:`CodecError` (reason ``registry_unavailable``) only if the schema
        registry cannot be asked for a writer schema: retry the batch or stop.
        """
        ts = None if timestamps is None else np.asarray(timestamps, dtype=np.int64)
        source = Source(
            None if ts is None else (lambda: ts),
            None if keys is None else (lambda: keys),
            None if partitions is None else np.asarray(partitions, dtype=np.int32),
            None if offsets is None else np.asarray(offsets, dtype=np.int64),
        )
        return self._decode_guarded(values, source)

    def decode_messages(self, messages: Sequence[Any]) -> DecodedBatch:
        """Decode ``confluent_kafka.Message`` objects (value, key, timestamp, partition, offset).

        Keys and timestamps are read from the messages only when some body lacks them.
        """

        def kafka_ts() -> np.ndarray:
            return np.fromiter(
                (t if kind else NO_TIMESTAMP for kind, t in (m.timestamp() for m in messages)),
                np.int64,
                len(messages),
            )

        def kafka_keys() -> list[bytes | None]:
            return [m.key() for m in messages]

        source = Source(
            kafka_ts,
            kafka_keys,
            message_ints(messages, "partition", np.int32),
            message_ints(messages, "offset", np.int64),
        )
        return self._decode_guarded(message_column(messages, "value"), source)

    # ---- fault isolation
    def _decode_guarded(self, values: Sequence[bytes | None], source: Source) -> DecodedBatch:
        """The batch at once; if that raises unexpectedly, message by message, so that only the
        message at fault becomes a dead letter (``internal_error``)."""
        try:
            return self._decode_values(values, source)
        except CodecError as exc:
            if exc.reason == REGISTRY_UNAVAILABLE:
                raise
        except Exception:  # noqa: S110  # pinned to its message below
            pass
        return self._decode_each(values, source)

    def _decode_each(self, values: Sequence[bytes | None], source: Source) -> DecodedBatch:
        parts: list[DecodedBatch] = []
        errors: list[BadMessage] = []
        for i, value in enumerate(values):
            try:
                one = self._decode_values([value], source.one(i))
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
        return concat(parts, errors, source.partitions, source.offsets)

    def _decode_values(self, values: Sequence[bytes | None], source: Source) -> DecodedBatch:
        """Size check, the format's parse, the common assembly."""
        limit = self.limits.max_message_bytes
        big = [] if limit is None else longer_than(values, limit)
        if not big:
            return self._assemble(len(values), self._parse(values), source)
        values = list(values)
        sizes = {i: len(values[i]) for i in big}  # type: ignore[arg-type]
        for i in big:
            values[i] = None  # never parsed
        p = self._parse(values)
        p.errors = [e for e in p.errors if e.index not in sizes]
        p.errors.extend(
            BadMessage(i, TOO_LARGE, f"{n} bytes, over messages.max_message_bytes = {limit}")
            for i, n in sizes.items()
        )
        return self._assemble(len(values), p, source)

    # ---- the format's part
    def _parse(self, values: Sequence[bytes | None]) -> Parsed:
        raise NotImplementedError

    # ---- the common part
    def _assemble(self, n_values: int, p: Parsed, source: Source) -> DecodedBatch:
        errors = p.errors
        if p.index is None:
            index = np.arange(n_values, dtype=np.intp)
        else:
            index = np.array(p.index, dtype=np.intp)
        ids, keys, feats, labels, tss = p.ids, p.keys, p.features, p.labels, p.timestamps
        m = len(ids)
        bad: Bad = {}

        if not (p.typed or all_of(ids, str)):
            ids = [x if type(x) is str else str(x) for x in ids]
        if None in keys if p.typed else not all_of(keys, str):
            keys = self._fix_keys(keys, index, source, bad)
        n_unlabeled = labels.count(None)
        if p.check_floats and n_unlabeled < m:
            for i, y in enumerate(labels):
                if type(y) is float and not math.isfinite(y):
                    bad[i] = (BAD_LABEL, f"label is {y}")
        if not p.bounded:
            check_lengths(self.limits, self.fields, (ids, keys, labels, feats), n_unlabeled, bad)
        n_featureless = feats.count(None)
        has_label = not_none(labels, n_unlabeled)
        has_features = not_none(feats, n_featureless)
        if n_featureless and n_unlabeled:
            for i in np.flatnonzero(~(has_label | has_features)).tolist():
                bad.setdefault(i, (MISSING_FIELD, self._no_features_message))
        seen: tuple[list[Any], set[type]] | None = None  # features present, and their types
        if n_featureless < m:
            present = list(compress(feats, has_features.tolist())) if n_featureless else feats
            seen = present, set(map(type, present))
            self._check_feature_shapes(feats, *seen, bad, p.feature_struct)
        stamps = self._timestamps(tss, index, source, bad, p.typed)
        clamped = check_times(self.limits, self.clock, stamps, bad) if m else 0

        if bad:
            errors.extend(BadMessage(int(index[i]), r, text) for i, (r, text) in bad.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = without(
                bad, (index, stamps, has_label, has_features), (ids, keys, labels, feats)
            )

        names, X, xs, late = self._features(
            feats, has_features, p.feature_struct, None if bad else seen
        )
        late.update(self.columns.refuse(names, xs, has_features, late))
        if late:  # rare: drop those rows and lay the matrix out again without them
            errors.extend(BadMessage(int(index[i]), r, t) for i, (r, t) in late.items())
            (index, stamps, has_label, has_features), (ids, keys, labels, feats) = without(
                late, (index, stamps, has_label, has_features), (ids, keys, labels, feats)
            )
            names, X, xs, _ = self._features(feats, has_features, p.feature_struct)

        errors.sort(key=itemgetter(0))
        parts, offs = source.partitions, source.offsets
        return DecodedBatch(
            index=index,
            event_ids=ids,
            keys=keys,
            partitions=np.full(len(ids), -1, np.int32) if parts is None else parts[index],
            offsets=np.full(len(ids), -1, np.int64) if offs is None else offs[index],
            has_label=has_label,
            labels=labels,
            has_features=has_features,
            feature_names=names,
            X=X,
            xs=xs,
            timestamps=stamps,
            errors=errors,
            clamped=clamped,
            source_partitions=parts,
            source_offsets=offs,
        )

    @property
    def _no_features_message(self) -> str:
        f = self.fields
        return f"an event without {f.label!r} needs {f.features!r}"

    def _fix_keys(
        self,
        keys: list[Any],
        index: np.ndarray,
        source: Source,
        bad: Bad,
    ) -> list[str]:
        fallback = source.keys() if source.keys is not None and None in keys else None
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
                bound = self.limits.max_key_length
                if isinstance(raw, str) and bound is not None and len(raw) > bound:
                    out.append("")
                    bad[i] = (TOO_LONG, f"the Kafka key has {len(raw)} characters, over {bound}")
                elif isinstance(raw, str):
                    out.append(raw)
                else:
                    out.append("")
                    bad[i] = (MISSING_FIELD, f"no {self.fields.key!r} and no usable Kafka key")
        return out

    def _check_feature_shapes(
        self,
        feats: list[Any],
        present: list[Any],
        kinds: set[type],
        bad: Bad,
        struct: FeatureStruct | None,
    ) -> None:
        """Empty features, and list features of the wrong length (see :class:`FeatureWidth`).
        ``present`` is ``feats`` without its Nones, ``kinds`` their types.

        Whole-column checks first; the row-by-row loops run only when something is off.
        """
        if struct is not None and struct.type in kinds:  # a struct is never empty
            kinds = kinds - {struct.type}
            if not kinds:
                return
            present = [f for f in present if type(f) is not struct.type]
        if present and min(map(len, present)) == 0:
            for i, f in enumerate(feats):
                if f is not None and not f:
                    bad[i] = (MISSING_FIELD, f"{self.fields.features!r} is empty")
        if list not in kinds:
            return
        n = self.width.known
        if n is not None and {len(f) for f in present if type(f) is list} <= {0, n}:
            return
        rows = [i for i, f in enumerate(feats) if type(f) is list and f and i not in bad]
        lengths = [len(feats[i]) for i in rows]
        for j in self.width.judge(lengths):
            n = self.width.known or self.width.leader
            bad[rows[j]] = (
                WRONG_FEATURE_COUNT,
                f"{lengths[j]} feature values where {n} are expected",
            )

    def _list_names(self, n: int) -> list[str]:
        if self.feature_names is not None and len(self.feature_names) == n:
            return list(self.feature_names)
        while len(self._position_names) < n:
            self._position_names.append(str(len(self._position_names)))
        return self._position_names[:n]

    def _features(
        self,
        feats: list[Any],
        has: np.ndarray,
        struct: FeatureStruct | None = None,
        seen: tuple[list[Any], set[type]] | None = None,
    ) -> tuple[list[str], np.ndarray, list[Any] | None, Bad]:
        """(names, X, xs or None, {row: not-finite reason}); ``has``: which feats are not
        None; ``seen``: the present ones and their types, if known already."""
        m = len(feats)
        n_none = m - int(np.count_nonzero(has))
        if n_none == m:
            return [], np.zeros((m, 0)), None, {}
        if seen is None:
            present = list(compress(feats, has.tolist())) if n_none else feats
            kinds = set(map(type, present))
        else:
            present, kinds = seen
        k = len(present)
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

        not_finite: Bad = {}
        finite = np.isfinite(values)
        if not finite.all():
            rows_present = np.flatnonzero(has)
            for r, c in zip(*np.nonzero(~finite), strict=True):
                row = int(rows_present[r])
                if row not in not_finite:
                    not_finite[row] = (NOT_FINITE, f"feature {names[c]!r} is {values[r, c]}")
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
        source: Source,
        bad: Bad,
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
            fallback = source.timestamps()[index] if source.timestamps is not None else None
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
