"""Properties: decode(encode(event)) is the event, alone or among bad messages, both formats."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oml.codecs import avro
from oml.codecs.events import AvroEventDecoder, Event, EventEncoder, JsonEventDecoder
from oml.codecs.limits import NO_LIMITS
from oml.codecs.outputs import PredictionCodec
from oml.config import FieldNames

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])

texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
finite = st.floats(allow_nan=False, allow_infinity=False)
labels = st.one_of(
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    finite,
    texts,
)
feature_dicts = st.dictionaries(texts, finite, min_size=1, max_size=6)
feature_lists = st.lists(finite, min_size=1, max_size=6)
timestamps = st.one_of(st.none(), st.integers(min_value=0, max_value=2**63 - 1))


@st.composite
def events(draw: st.DrawFn, features: st.SearchStrategy[Any] | None = None) -> Event:
    label = draw(st.one_of(st.none(), labels))
    shape = features if features is not None else st.one_of(feature_dicts, feature_lists)
    feats = draw(shape if label is None else st.one_of(st.none(), shape))
    return Event(draw(texts), draw(texts), feats, label, draw(timestamps))


def expected_features(event: Event) -> dict[str, float] | None:
    if isinstance(event.features, list):
        return {str(i): v for i, v in enumerate(event.features)}
    return event.features


def check_row(batch: Any, row: int, event: Event) -> None:
    assert batch.event_ids[row] == event.event_id
    assert batch.keys[row] == event.key
    assert batch.labels[row] == event.label
    assert type(batch.labels[row]) is type(event.label)
    assert bool(batch.has_label[row]) == (event.label is not None)
    assert batch.features(row) == expected_features(event)
    assert batch.timestamps[row] == (-1 if event.timestamp is None else event.timestamp)


def decoder(fmt: str, fields: FieldNames) -> JsonEventDecoder | AvroEventDecoder:
    """A decoder of the format alone (any timestamp, any length: the limits are tested in
    test_codec_limits.py)."""
    kind = JsonEventDecoder if fmt == "json" else AvroEventDecoder
    return kind(fields, limits=NO_LIMITS)


field_names = st.sampled_from(
    [FieldNames(), FieldNames(event_id="id", key="k", features="x", label="y", timestamp="t")]
)


@SETTINGS
@given(event=events(), fmt=st.sampled_from(["json", "avro"]), fields=field_names)
def test_decode_encode_is_identity(event: Event, fmt: str, fields: FieldNames) -> None:
    batch = decoder(fmt, fields).decode_batch([EventEncoder(fields, fmt)(event)])
    assert batch.errors == []
    assert len(batch) == 1
    check_row(batch, 0, event)


JSON_GARBAGE = [
    b"{",
    b"null",
    b'{"event_id": "x", "key": "k", "features": {"a": NaN}}',
    b'{"event_id": "x", "key": "k"}',
    b'{"event_id": "x", "key": "k", "label": {}}',
    b'{"event_id": "x", "key": "k", "features": {"a": "1"}}',
]
AVRO_GARBAGE = [b"", b"\xff\xff\xff", b"\x02x\x02k\x0e"]


@SETTINGS
@given(
    batch_events=st.lists(events(feature_dicts), min_size=1, max_size=20),
    garbage=st.lists(st.tuples(st.integers(0, 20), st.integers(0, 100)), max_size=5),
    fmt=st.sampled_from(["json", "avro"]),
)
def test_good_messages_survive_bad_neighbours(
    batch_events: list[Event], garbage: list[tuple[int, int]], fmt: str
) -> None:
    encoder = EventEncoder(format=fmt)
    values: list[bytes | None] = list(encoder.encode_batch(batch_events))
    pool = JSON_GARBAGE if fmt == "json" else AVRO_GARBAGE
    bad_positions = []
    for position, choice in garbage:
        position = min(position, len(values))
        values.insert(position, pool[choice % len(pool)])
        bad_positions = [p + 1 if p >= position else p for p in bad_positions] + [position]
    batch = decoder(fmt, FieldNames()).decode_batch(values)
    assert sorted(e.index for e in batch.errors) == sorted(bad_positions)
    assert len(batch) == len(batch_events)
    good_positions = [i for i in range(len(values)) if i not in set(bad_positions)]
    assert batch.index.tolist() == good_positions
    for row, event in enumerate(batch_events):
        check_row(batch, row, event)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(texts, texts, st.one_of(st.none(), labels), st.integers(0, 2**40)),
        min_size=1,
        max_size=10,
    ),
    fmt=st.sampled_from(["json", "avro"]),
)
def test_predictions_round_trip(rows: list[tuple[str, str, Any, int]], fmt: str) -> None:
    codec = PredictionCodec(fmt)
    ids, keys, predictions, updates = map(list, zip(*rows, strict=True))
    values = codec.encode_batch(
        ids,
        keys,
        predictions,
        n_updates=np.array(updates),
        event_timestamps=np.zeros(len(rows), dtype=np.int64),
        processed_timestamp=1,
        algorithm="scw",
    )
    for value, (event_id, key, prediction, n) in zip(values, rows, strict=True):
        record = codec.decode(value)
        assert (record.event_id, record.key, record.n_updates) == (event_id, key, n)
        assert record.prediction == prediction and type(record.prediction) is type(prediction)


@SETTINGS
@given(
    rows=st.lists(
        st.tuples(
            texts,
            texts,
            st.one_of(st.none(), labels),
            st.one_of(st.none(), finite),
            st.integers(0, 2**63 - 1),
            st.integers(-1, 2**63 - 1),
        ),
        min_size=1,
        max_size=10,
    ),
    classes=st.one_of(st.none(), st.lists(texts, unique=True, max_size=4)),
    algorithm=texts,
    data=st.data(),
)
def test_hand_written_avro_predictions_are_fastavros_bytes(
    rows: list[tuple[Any, ...]],
    classes: list[str] | None,
    algorithm: str,
    data: st.DataObject,
) -> None:
    """The Avro prediction writer lays bytes out by hand; fastavro must agree byte for byte."""
    ids, keys, predictions, scores, updates, stamps = map(list, zip(*rows, strict=True))
    proba = None
    if classes is not None:
        proba = np.array(
            data.draw(
                st.lists(
                    st.lists(finite, min_size=len(classes), max_size=len(classes)),
                    min_size=len(rows),
                    max_size=len(rows),
                )
            ),
            dtype=np.float64,
        ).reshape(len(rows), len(classes))
    score = None if all(s is None for s in scores) else scores
    values = PredictionCodec("avro").encode_batch(
        ids,
        keys,
        predictions,
        classes=classes,
        proba=proba,
        score=score if score is None else np.array([np.nan if s is None else s for s in score]),
        n_updates=np.array(updates, dtype=np.int64),
        event_timestamps=np.array(stamps, dtype=np.int64),
        processed_timestamp=123,
        algorithm=algorithm,
    )
    schema = avro.parse(avro.plain_longs(avro.load_schema(avro.PREDICTION)))
    for i, value in enumerate(values):
        record = {
            "event_id": ids[i],
            "key": keys[i],
            "prediction": predictions[i],
            "proba": None if proba is None else dict(zip(classes or [], proba[i].tolist())),
            "score": None if score is None else float(np.nan if scores[i] is None else scores[i]),
            "n_updates": updates[i],
            "event_timestamp": None if stamps[i] < 0 else stamps[i],
            "processed_timestamp": 123,
            "algorithm": algorithm,
        }
        stream = io.BytesIO()
        fastavro.schemaless_writer(stream, schema, record)
        assert value == stream.getvalue()
