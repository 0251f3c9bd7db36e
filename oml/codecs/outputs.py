"""Output records: predictions and prequential metrics, as JSON or Avro, a batch at a time.

A prediction (JSON; Avro has the same fields, ``oml/schemas/prediction.avsc``)::

    {"event_id": "e1", "key": "user-7", "prediction": true,
     "proba": {"false": 0.2, "true": 0.8}, "score": 1.386, "n_updates": 41,
     "event_timestamp": 1700000000000, "processed_timestamp": 1700000000123, "algorithm": "scw"}

``proba`` maps each class the key's model knows, written as a string (``true``/``false`` for
booleans), to its probability (``{}`` before the model has seen a label); it is null for
regressors, and ``score`` is null where the algorithm has no decision value.  A metrics record
(``metrics.avsc``)::

    {"key": "user-7", "n": 1000, "window": 1000, "accuracy": 0.93, "mae": null, "rmse": null,
     "timestamp": 1700000000123, "algorithm": "scw"}

``key`` is null in the record for all keys together.

>>> codec = PredictionCodec()
>>> codec.encode_batch(["e1"], ["a"], [True], classes=[False, True],
...                    proba=np.array([[0.25, 0.75]]), n_updates=[3],
...                    event_timestamps=[-1], processed_timestamp=5, algorithm="pa")
[b'{"event_id":"e1","key":"a","prediction":true,"proba":{"false":0.25,"true":0.75},"score":null,"n_updates":3,"event_timestamp":null,"processed_timestamp":5,"algorithm":"pa"}']
"""


from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat, starmap
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from oml.codecs import avro
from oml.codecs.errors import SCHEMA_MISMATCH, CodecError
from oml.codecs.records import Label, Metrics, Prediction, RecordCodec, class_name
from oml.codecs.schema_registry import make_registry_client
from oml.config import Config
from oml.learner import plain

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = [
    "Label",
    "Metrics",
    "MetricsCodec",
    "OutputCodecs",
    "Prediction",
    "PredictionCodec",
    "class_name",
]


class PredictionCodec(RecordCodec):
    """Encodes predictions a batch at a time from columns (and decodes them, for consumers)."""

    schema_file = avro.PREDICTION
    record_type = Prediction

    def __init__(
        self,
        format: str = "json",
        *,
        registry: SchemaRegistryClient | None = None,
        subject: str | None = None,
    ) -> None:
        super().__init__(format, registry=registry, subject=subject)
        self._proba_types: dict[tuple[str, ...], type | None] = {}

    topic = "predictions"

    def encode_batch(
        self,
        event_ids: Sequence[str],
        keys: Sequence[str],
        predictions: Sequence[Any],
        *,
        n_updates: Sequence[int] | np.ndarray,
        event_timestamps: Sequence[int] | np.ndarray,
        processed_timestamp: int,
        algorithm: str,
        classes: Sequence[Any] | None = None,
        proba: np.ndarray | None = None,
        score: np.ndarray | Sequence[float | None] | None = None,
        known: np.ndarray | None = None,
    ) -> list[bytes]:
        """One message value per prediction, all arguments parallel (length n).

        ``predictions``: the predicted label or value per event (None: no prediction yet).
        ``classes``, ``proba`` and ``known``: the class list, an (n, len(classes)) matrix and
        the mask of the classes each event's model knows (None: all), as in
        :class:`oml.bank.BankPrediction`; ``score``: (n,) decision values.  All optional.
        ``n_updates``: each model's update count; ``event_timestamps``: ms, negative for
        unknown (written as null); ``processed_timestamp``: ms, the same for the whole batch.
        """
        n = len(event_ids)
        if n == 0:
            return []
        return self._encode_batch(
            event_ids, keys, predictions, n_updates, event_timestamps,
            processed_timestamp, algorithm, classes, proba, score, known,
        )  # fmt: skip

    def _encode_batch(
        self,
        event_ids: Sequence[str],
        keys: Sequence[str],
        predictions: Sequence[Any],
        n_updates: Sequence[int] | np.ndarray,
        event_timestamps: Sequence[int] | np.ndarray,
        processed_timestamp: int,
        algorithm: str,
        classes: Sequence[Any] | None,
        proba: np.ndarray | None,
        score: np.ndarray | Sequence[float | None] | None,
        known: np.ndarray | None = None,
    ) -> list[bytes]:
        n = len(event_ids)
        stamps = np.asarray(event_timestamps, dtype=np.int64)
        ts: list[Any] = stamps.tolist()
        if n and stamps.min() < 0:
            ts = [t if t >= 0 else None for t in ts]
        updates = np.asarray(n_updates, dtype=np.int64).tolist()
        names = None if classes is None else tuple(class_name(c) for c in classes)
        if self.format == "avro":
            return _avro_predictions(
                self._header, event_ids, keys, [plain(p) for p in predictions], names,
                None if proba is None or names is None else np.asarray(proba, np.float64).tolist(),
                None if score is None else np.asarray(score, np.float64).tolist(),
                updates, ts, int(processed_timestamp), algorithm,
                None if known is None else np.asarray(known, bool).tolist(),
            )  # fmt: skip
        probas: Any = repeat(None, n)
        if proba is not None and names is not None:
            probas = self._probas(names, proba, known)
        scores: Any = repeat(None, n)
        if score is not None:
            array = np.asarray(score)
            scores = (
                array.tolist()
                if array.dtype.kind == "f"
                else [None if s is None else float(s) for s in array.tolist()]
            )
        records = list(
            map(
                Prediction,
                event_ids,
                keys,
                predictions,
                probas,
                scores,
                updates,
                ts,
                repeat(int(processed_timestamp), n),
                repeat(algorithm, n),
            )
        )
        return self.encode_records(records)

    def _probas(
        self, names: tuple[str, ...], proba: np.ndarray, known: np.ndarray | None = None
    ) -> list[Any]:
        """One class-to-probability mapping per row, over the row's known classes.

        A struct type per class list (made once) is ten times quicker to fill than a dict and
        encodes to the same JSON object.
        """
        rows = np.asarray(proba, dtype=np.float64).tolist()
        if known is None:
            return self._fill(names, rows)
        out = []
        for row, mask in zip(rows, np.asarray(known, bool).tolist(), strict=True):
            sub = tuple(n for n, k in zip(names, mask, strict=True) if k)
            out.extend(self._fill(sub, [[v for v, k in zip(row, mask, strict=True) if k]]))
        return out

    def _fill(self, names: tuple[str, ...], rows: list[list[float]]) -> list[Any]:
        cache = self._proba_types
        if names not in cache:
            if len(cache) > 64:
                cache.clear()
            attrs = [f"c{i}" for i in range(len(names))]
            try:
                cache[names] = msgspec.defstruct(
                    "Proba",
                    [(a, float) for a in attrs],
                    rename=dict(zip(attrs, names, strict=True)),
                    gc=False,
                )
            except (ValueError, TypeError):  # duplicate or unusable names: dicts will do
                cache[names] = None
        proba_type = cache[names]
        if proba_type is not None:
            return list(starmap(proba_type, rows))
        return [dict(zip(names, row, strict=True)) for row in rows]


_DOUBLE = struct.Struct("<d").pack
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


def _avro_predictions(
    header: bytes,
    event_ids: Sequence[str],
    keys: Sequence[str],
    predictions: Sequence[Any],
    classes: tuple[str, ...] | None,
    proba: list[list[float]] | None,
    scores: list[float] | None,
    n_updates: list[int],
    event_timestamps: list[int | None],
    processed_timestamp: int,
    algorithm: str,
    known: list[list[bool]] | None = None,
) -> list[bytes]:
    """Prediction records in Avro binary (``prediction.avsc``), written by hand.

    The schema is ours and fixed, so the bytes can be laid out directly: about four times
    quicker than fastavro's generic writer, and byte for byte the same (the tests check that).
    Union branches: prediction null/boolean/long/double/string = 0..4, the others null = 0.
    """
    long_, string = avro.zigzag, avro.string
    tail = long_(processed_timestamp) + string(algorithm)
    no_proba = b"\x00"
    if classes is not None and proba is not None:
        names = [string(c) for c in classes]
        block = b"\x02" + (long_(len(names)) if names else b"")
    out = []
    try:
        for i, event_id in enumerate(event_ids):
            parts = [header, string(event_id), string(keys[i])]
            p = predictions[i]
            if p is None:
                parts.append(b"\x00")
            elif p is True:
                parts.append(b"\x02\x01")
            elif p is False:
                parts.append(b"\x02\x00")
            elif type(p) is int:
                if not _LONG_MIN <= p <= _LONG_MAX:
                    raise ValueError(f"prediction {p} does not fit an Avro long")
                parts.append(b"\x04" + long_(p))
            elif type(p) is float:
                parts.append(b"\x06" + _DOUBLE(p))
            elif type(p) is str:
                parts.append(b"\x08" + string(p))
            else:
                raise TypeError(f"prediction {p!r} is not null, a bool, an int, a float or a str")
            if proba is None or classes is None:
                parts.append(no_proba)
            else:
                mask = None if known is None else known[i]
                if mask is None:
                    parts.append(block)
                else:
                    count = sum(mask)
                    parts.append(b"\x02" + (long_(count) if count else b""))
                for j, (name, value) in enumerate(zip(names, proba[i], strict=True)):
                    if mask is None or mask[j]:
                        parts.append(name)
                        parts.append(_DOUBLE(value))
                parts.append(b"\x00")
            score = None if scores is None else scores[i]
            parts.append(b"\x00" if score is None else b"\x02" + _DOUBLE(score))
            parts.append(long_(n_updates[i]))
            t = event_timestamps[i]
            parts.append(b"\x00" if t is None else b"\x02" + long_(t))
            parts.append(tail)
            out.append(b"".join(parts))
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise CodecError(SCHEMA_MISMATCH, f"prediction does not fit the schema: {exc}") from exc
    return out


class MetricsCodec(RecordCodec):
    """Encodes metrics records (and decodes them, for consumers)."""

    schema_file = avro.METRICS
    record_type = Metrics

    topic = "metrics"

    def encode_batch(
        self,
        keys: Sequence[str | None],
        n: Sequence[int] | np.ndarray,
        *,
        window: Sequence[int] | np.ndarray | int,
        timestamp: int,
        algorithm: str,
        accuracy: Sequence[float | None] | np.ndarray | None = None,
        mae: Sequence[float | None] | np.ndarray | None = None,
        rmse: Sequence[float | None] | np.ndarray | None = None,
    ) -> list[bytes]:
        """One message value per key (None: all keys together), arguments parallel to ``keys``;
        ``window`` may be one number for all.  NaN metrics are written as null."""
        count = len(keys)
        windows = (
            repeat(int(window), count)
            if isinstance(window, int | np.integer)
            else np.asarray(window, np.int64).tolist()
        )

        def column(values: Any) -> Any:
            if values is None:
                return repeat(None, count)
            return [None if v is None or v != v else float(v) for v in np.asarray(values).tolist()]

        records = list(
            map(
                Metrics,
                keys,
                np.asarray(n, dtype=np.int64).tolist(),
                windows,
                column(accuracy),
                column(mae),
                column(rmse),
                repeat(int(timestamp), count),
                repeat(algorithm, count),
            )
        )
        return self.encode_records(records)


@dataclass(frozen=True)
class OutputCodecs:
    """The encoders of the service's output topics, built once from the configuration.

    Both share one schema-registry client (made from ``messages.schema_registry_url`` unless one
    is given), which the input decoder (:func:`oml.codecs.events.event_decoder`) may share too.
    With a registry and Avro, building them registers the output schemas under
    ``{topic}-value`` (a network call: it may raise :class:`CodecError` ``registry_unavailable``).
    JSON output is never framed.

    >>> from oml.config import load_config
    >>> outputs = OutputCodecs.from_config(load_config(None, {}, {}))
    >>> outputs.predictions.encode_batch(["e1"], ["a"], [True], n_updates=[0],
    ...     event_timestamps=[-1], processed_timestamp=1, algorithm="scw")
    [b'{"event_id":"e1","key":"a","prediction":true,"proba":null,"score":null,"n_updates":0,"event_timestamp":null,"processed_timestamp":1,"algorithm":"scw"}']
    """

    predictions: PredictionCodec
    metrics: MetricsCodec

    @classmethod
    def from_config(
        cls, config: Config, registry: SchemaRegistryClient | None = None
    ) -> OutputCodecs:
        if registry is None and config.messages.format == "avro":
            registry = make_registry_client(config.messages)
        return cls(
            PredictionCodec.from_config(config, registry),
            MetricsCodec.from_config(config, registry),
        )
