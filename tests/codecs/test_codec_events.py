"""Input events: batch decoding into columns, every bad-input reason, both formats."""

from __future__ import annotations

import io
import json
import math
from typing import Any

import fastavro
import numpy as np
import pytest

from oml.bank import Bank
from oml.codecs import avro
from oml.codecs.errors import (
    BAD_LABEL,
    MALFORMED,
    MISSING_FIELD,
    NOT_FINITE,
    REASONS,
    SCHEMA_MISMATCH,
    WRONG_FEATURE_COUNT,
    BadMessage,
)
from oml.codecs.events import (
    NO_TIMESTAMP,
    AvroEventDecoder,
    Event,
    EventEncoder,
    JsonEventDecoder,
    event_decoder,
)
from oml.config import FieldNames, load_config

FORMATS = ["json", "avro"]


def decoder_for(fmt: str, **kwargs: Any) -> JsonEventDecoder | AvroEventDecoder:
    return JsonEventDecoder(**kwargs) if fmt == "json" else AvroEventDecoder(**kwargs)


def good_events() -> list[Event]:
    return [
        Event("e1", "a", {"x": 1.5, "y": -2.0}, timestamp=1_700_000_000_000),
        Event("e2", "b", {"x": 0.0, "y": 3.25}),
        Event("e0", "a", label=True),
        Event("e3", "c", {"x": 1.0, "y": 1.0}, label="spam", timestamp=5),
        Event("e4", "c", label=2.5),
        Event("e5", "d", label=-7),
    ]


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_of_every_message_kind(fmt: str) -> None:
    events = good_events()
    values = EventEncoder(format=fmt).encode_batch(events)
    batch = decoder_for(fmt).decode_batch(values)
    assert batch.errors == []
    assert len(batch) == len(events)
    assert batch.index.tolist() == list(range(len(events)))
    assert batch.event_ids == [e.event_id for e in events]
    assert batch.keys == [e.key for e in events]
    assert batch.labels == [e.label for e in events]
    assert [type(y) for y in batch.labels] == [type(e.label) for e in events]
    assert batch.has_label.tolist() == [e.label is not None for e in events]
    assert batch.has_features.tolist() == [e.features is not None for e in events]
    assert batch.feature_names == ["x", "y"]
    assert batch.xs is None
    assert batch.X.dtype == np.float64 and batch.X.shape == (6, 2)
    for i, e in enumerate(events):
        assert batch.features(i) == e.features
    assert batch.timestamps.dtype == np.int64
    assert batch.timestamps.tolist() == [
        NO_TIMESTAMP if e.timestamp is None else e.timestamp for e in events
    ]
    assert (batch.partitions == -1).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_list_features(fmt: str) -> None:
    events = [Event("e1", "a", [1.0, 2.0, 3.0]), Event("e2", "b", [4.0, 5.0, 6.0], label=1)]
    batch = decoder_for(fmt).decode_batch(EventEncoder(format=fmt).encode_batch(events))
    assert batch.errors == []
    assert batch.feature_names == ["0", "1", "2"]
    assert batch.X.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    named = decoder_for(fmt, feature_names=["a", "b", "c"])
    assert named.decode_batch(EventEncoder(format=fmt).encode_batch(events)).feature_names == [
        "a",
        "b",
        "c",
    ]


@pytest.mark.parametrize("fmt", FORMATS)
def test_differing_feature_names_give_a_union_matrix_and_dicts(fmt: str) -> None:
    events = [
        Event("e1", "a", {"x": 1.0, "y": 2.0}),
        Event("e2", "a", {"y": 3.0, "x": 4.0}),  # same names, other order
        Event("e3", "b", {"z": 5.0}),
        Event("e4", "b", label=False),
        Event("e5", "b", [7.0, 8.0]),
    ]
    batch = decoder_for(fmt).decode_batch(EventEncoder(format=fmt).encode_batch(events))
    assert batch.errors == []
    assert batch.xs is not None
    assert batch.feature_names == ["x", "y", "z", "0", "1"]
    assert batch.X.tolist() == [
        [1.0, 2.0, 0.0, 0.0, 0.0],
        [4.0, 3.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 5.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 7.0, 8.0],
    ]
    assert batch.xs == [
        {"x": 1.0, "y": 2.0},
        {"y": 3.0, "x": 4.0},
        {"z": 5.0},
        None,
        {"0": 7.0, "1": 8.0},
    ]
    assert batch.features(3) is None


def test_iso_timestamps_and_float_milliseconds() -> None:
    values = [
        b'{"event_id": "a", "key": "k", "features": [1], "timestamp": "2024-05-01T12:00:00Z"}',
        b'{"event_id": "b", "key": "k", "features": [1], "timestamp": "2024-05-01T14:00:00+02:00"}',
        b'{"event_id": "c", "key": "k", "features": [1], "timestamp": "2024-05-01T12:00:00"}',
        b'{"event_id": "d", "key": "k", "features": [1], "timestamp": 1714564800000.9}',
    ]
    batch = JsonEventDecoder().decode_batch(values)
    assert batch.errors == []
    assert batch.timestamps.tolist() == [1_714_564_800_000] * 4


def test_kafka_timestamp_and_key_fill_in() -> None:
    values = [
        b'{"event_id": "a", "features": [1], "timestamp": 10}',
        b'{"event_id": "b", "key": "body-key", "features": [1]}',
        b'{"event_id": "c", "features": [1]}',
    ]
    batch = JsonEventDecoder().decode_batch(
        values, timestamps=[100, 200, -1], keys=[b"kafka-a", b"kafka-b", "kafka-c"]
    )
    assert batch.errors == []
    assert batch.keys == ["kafka-a", "body-key", "kafka-c"]
    assert batch.timestamps.tolist() == [10, 200, -1]


def test_integer_ids_and_keys_become_strings() -> None:
    batch = JsonEventDecoder().decode_batch([b'{"event_id": 17, "key": 4, "features": [1]}'])
    assert (batch.event_ids, batch.keys) == (["17"], ["4"])


def test_unknown_fields_are_ignored() -> None:
    value = b'{"event_id": "a", "key": "k", "features": [1], "source": {"app": "web"}}'
    assert JsonEventDecoder().decode_batch([value]).errors == []


# ---------------------------------------------------------------------------- bad input


GOOD = b'{"event_id": "g%d", "key": "k", "features": {"x": 1.0, "y": 2.0}}'

JSON_BAD: list[tuple[str, bytes | None]] = [
    (MALFORMED, b"not json"),
    (MALFORMED, b'{"event_id": "t", "key": "k", "features": {"x": 1'),
    (MALFORMED, b""),
    (MALFORMED, None),
    (MALFORMED, b'{"event_id": "t", "key": "k", "features": [1, 2]}, {"event_id": "u"}'),
    (MALFORMED, b"\x00\x00\x00"),
    (SCHEMA_MISMATCH, b'["event_id", "key"]'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "features": {"x": "1.0"}}'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "features": {"x": true}}'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "features": "x=1"}'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "features": [1], "timestamp": "soon"}'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "features": [1, 2], "timestamp": -5}'),
    (SCHEMA_MISMATCH, b'{"event_id": "s", "key": "k", "label": 1, "timestamp": 1e300}'),
    (SCHEMA_MISMATCH, b'{"event_id": ["s"], "key": "k", "features": [1]}'),
    (MISSING_FIELD, b'{"key": "k", "features": {"x": 1.0}}'),
    (MISSING_FIELD, b'{"event_id": "m", "features": {"x": 1.0}}'),
    (MISSING_FIELD, b'{"event_id": "m", "key": "k"}'),
    (MISSING_FIELD, b'{"event_id": "m", "key": "k", "features": {}}'),
    (MISSING_FIELD, b'{"event_id": "m", "key": "k", "label": null}'),
    (NOT_FINITE, b'{"event_id": "n", "key": "k", "features": {"x": NaN, "y": 1}}'),
    (NOT_FINITE, b'{"event_id": "n", "key": "k", "features": {"x": 1, "y": Infinity}}'),
    (NOT_FINITE, b'{"event_id": "n", "key": "k", "features": [1, -Infinity]}'),
    (NOT_FINITE, b'{"event_id": "n", "key": "k", "features": {"x": 1e999, "y": 1}}'),
    (NOT_FINITE, b'{"event_id": "n", "key": "k", "label": 1, "features": {"x": 1e400}}'),
    (WRONG_FEATURE_COUNT, b'{"event_id": "w", "key": "k", "features": [1, 2, 3]}'),
    (BAD_LABEL, b'{"event_id": "l", "key": "k", "label": [1]}'),
    (BAD_LABEL, b'{"event_id": "l", "key": "k", "label": {"class": 1}}'),
    (BAD_LABEL, b'{"event_id": "l", "key": "k", "label": NaN}'),
    (BAD_LABEL, b'{"event_id": "l", "key": "k", "label": 1e999}'),
]


@pytest.mark.parametrize(("reason", "bad"), JSON_BAD)
def test_each_bad_json_message_is_reported_and_the_rest_decode(
    reason: str, bad: bytes | None
) -> None:
    decoder = JsonEventDecoder()
    decoder.restore_feature_count(2)  # a list of 3 is then the wrong count
    values: list[bytes | None] = [GOOD % i for i in range(5)]
    values.insert(2, bad)
    batch = decoder.decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == [(2, reason)], batch.errors
    assert batch.errors[0].message
    assert batch.event_ids == ["g0", "g1", "g2", "g3", "g4"]
    assert batch.index.tolist() == [0, 1, 3, 4, 5]
    assert batch.X.tolist() == [[1.0, 2.0]] * 5
    assert batch.xs is None


def test_all_bad_reasons_in_one_batch() -> None:
    decoder = JsonEventDecoder()
    decoder.restore_feature_count(2)
    values: list[bytes | None] = []
    expected = []
    for i, (reason, bad) in enumerate(JSON_BAD):
        values.append(GOOD % i)
        values.append(bad)
        expected.append((2 * i + 1, reason))
    batch = decoder.decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == expected
    assert {e.reason for e in batch.errors} == set(REASONS)
    assert batch.event_ids == [f"g{i}" for i in range(len(JSON_BAD))]
    assert batch.index.tolist() == [2 * i for i in range(len(JSON_BAD))]
    columns = (batch.partitions, batch.has_label, batch.has_features, batch.timestamps, batch.X)
    assert {len(c) for c in columns} == {len(batch.event_ids)}  # every column lost the bad rows
    assert all(isinstance(e, BadMessage) for e in batch.errors)
    index, reason, message = batch.errors[0]  # unpacks as (index, reason, message)
    assert (index, reason) == (1, MALFORMED) and isinstance(message, str)


def test_the_majority_of_lists_sets_the_feature_count() -> None:
    decoder = JsonEventDecoder()
    batch = decoder.decode_batch(
        [
            b'{"event_id": "a", "key": "k", "features": [1, 2, 3]}',
            b'{"event_id": "b", "key": "k", "features": [1, 2]}',
            b'{"event_id": "c", "key": "k", "features": [3, 4]}',
        ]
    )
    assert [(e.index, e.reason) for e in batch.errors] == [(0, WRONG_FEATURE_COUNT)]
    assert decoder.n_features is None  # not yet agreed by enough lists
    later = decoder.decode_batch([b'{"event_id": "c", "key": "k", "features": [1, 2, 3]}'])
    assert [e.reason for e in later.errors] == [WRONG_FEATURE_COUNT]
    configured = JsonEventDecoder(feature_names=["a", "b", "c"])
    assert configured.decode_batch([b'{"event_id": "c", "key": "k", "features": [1, 2]}']).errors


def test_an_all_bad_batch() -> None:
    batch = JsonEventDecoder().decode_batch([b"x", None])
    assert len(batch) == 0 and [e.reason for e in batch.errors] == [MALFORMED, MALFORMED]
    assert batch.X.shape == (0, 0) and batch.timestamps.shape == (0,)


def test_an_empty_batch() -> None:
    for decoder in (JsonEventDecoder(), AvroEventDecoder()):
        batch = decoder.decode_batch([])
        assert len(batch) == 0 and batch.errors == []


def avro_body(record: dict[str, Any], fields: FieldNames | None = None) -> bytes:
    stream = io.BytesIO()
    schema = avro.parse(avro.event_schema(fields or FieldNames()))
    fastavro.schemaless_writer(stream, schema, record)
    return stream.getvalue()


def avro_event(**overrides: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event_id": "g",
        "key": "k",
        "features": {"x": 1.0, "y": 2.0},
        "label": None,
        "timestamp": None,
    }
    record.update(overrides)
    return record


AVRO_BAD: list[tuple[str, bytes | None]] = [
    (MALFORMED, b""),
    (MALFORMED, None),
    (MALFORMED, avro_body(avro_event())[:-3]),
    (MALFORMED, avro_body(avro_event()) + b"\x00\x00"),
    (MALFORMED, b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
    (MALFORMED, b"\x04ab\x02k\x0e"),  # union branch 7 does not exist
    (NOT_FINITE, avro_body(avro_event(features={"x": math.nan, "y": 1.0}))),
    (NOT_FINITE, avro_body(avro_event(features={"x": 1.0, "y": -math.inf}))),
    (NOT_FINITE, avro_body(avro_event(features=[math.inf, 1.0]))),
    (MISSING_FIELD, avro_body(avro_event(features=None))),
    (MISSING_FIELD, avro_body(avro_event(features={}))),
    (WRONG_FEATURE_COUNT, avro_body(avro_event(features=[1.0, 2.0, 3.0]))),
    (BAD_LABEL, avro_body(avro_event(label=math.nan))),
    (BAD_LABEL, avro_body(avro_event(label=math.inf, features=None))),
]


@pytest.mark.parametrize(("reason", "bad"), AVRO_BAD)
def test_each_bad_avro_message_is_reported_and_the_rest_decode(
    reason: str, bad: bytes | None
) -> None:
    decoder = AvroEventDecoder()
    decoder.restore_feature_count(2)
    values: list[bytes | None] = [avro_body(avro_event(event_id=f"g{i}")) for i in range(5)]
    values.insert(2, bad)
    batch = decoder.decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == [(2, reason)], batch.errors
    assert batch.event_ids == ["g0", "g1", "g2", "g3", "g4"]
    assert batch.index.tolist() == [0, 1, 3, 4, 5]
    assert batch.X.tolist() == [[1.0, 2.0]] * 5


# ---------------------------------------------------------------------------- configuration


@pytest.mark.parametrize("fmt", FORMATS)
def test_configurable_field_names(fmt: str) -> None:
    fields = FieldNames(event_id="id", key="user", features="x", label="y", timestamp="ts")
    events = [Event("e1", "u1", {"a": 1.0}, timestamp=3), Event("e1", "u1", label=True)]
    values = EventEncoder(fields, fmt).encode_batch(events)
    if fmt == "json":
        assert json.loads(values[0]) == {"id": "e1", "user": "u1", "x": {"a": 1.0}, "ts": 3}
        assert json.loads(values[1]) == {"id": "e1", "user": "u1", "y": True}
    batch = decoder_for(fmt, fields=fields).decode_batch(values)
    assert batch.errors == []
    assert batch.event_ids == ["e1", "e1"] and batch.keys == ["u1", "u1"]
    assert batch.labels == [None, True] and batch.timestamps.tolist() == [3, -1]
    if fmt == "json":  # the default names are now unknown fields: the id is missing
        errors = decoder_for(fmt).decode_batch(values[:1]).errors
        assert [e.reason for e in errors] == [MISSING_FIELD]


def test_configured_names_classify_errors_by_their_own_name() -> None:
    decoder = JsonEventDecoder(FieldNames(label="target", features="vec"))
    batch = decoder.decode_batch(
        [
            b'{"event_id": "a", "key": "k", "target": [1]}',
            b'{"event_id": "b", "key": "k", "vec": {"x": 1e999}}',
            b'{"event_id": "c", "key": "k", "vec": {"x": NaN}}',
        ]
    )
    assert [e.reason for e in batch.errors] == [BAD_LABEL, NOT_FINITE, NOT_FINITE]


def test_avro_field_names_must_be_avro_names() -> None:
    with pytest.raises(ValueError, match="not a valid Avro field name"):
        AvroEventDecoder(FieldNames(event_id="event-id"))


def test_event_decoder_from_config() -> None:
    config = load_config(
        None,
        {
            "OML_MESSAGES__FIELDS__EVENT_ID": "id",
            "OML_MESSAGES__FEATURE_NAMES": "a,b",
        },
        {},
    )
    decoder = event_decoder(config)
    assert isinstance(decoder, JsonEventDecoder)
    assert decoder.n_features == 2
    batch = decoder.decode_batch([b'{"id": "e", "key": "k", "features": [1, 2]}'])
    assert batch.feature_names == ["a", "b"]
    avro_config = load_config(None, {"OML_MESSAGES__FORMAT": "avro"}, {})
    assert isinstance(event_decoder(avro_config), AvroEventDecoder)


# ---------------------------------------------------------------------------- the service side


class FakeMessage:
    """The parts of confluent_kafka.Message the decoder reads."""

    def __init__(
        self, value: bytes | None, key: bytes | None, partition: int, timestamp: int | None
    ) -> None:
        self._value, self._key, self._partition, self._ts = value, key, partition, timestamp

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return 100 + self._partition

    def timestamp(self) -> tuple[int, int]:
        return (0, -1) if self._ts is None else (1, self._ts)


def test_decode_messages_reads_kafka_metadata() -> None:
    messages = [
        FakeMessage(b'{"event_id": "a", "features": [1]}', b"k1", 3, 111),
        FakeMessage(b"bad", b"k2", 1, 222),
        FakeMessage(b'{"event_id": "c", "key": "k3", "label": 1}', None, 0, None),
        FakeMessage(b'{"event_id": "d", "key": "k4", "features": [2], "timestamp": 9}', None, 2, 5),
    ]
    batch = event_decoder(load_config(None, {}, {})).decode_messages(messages)
    assert [(e.index, e.reason) for e in batch.errors] == [(1, MALFORMED)]
    assert batch.index.tolist() == [0, 2, 3]
    assert batch.keys == ["k1", "k3", "k4"]
    assert batch.partitions.tolist() == [3, 0, 2]
    assert batch.offsets.tolist() == [103, 100, 102]
    assert batch.last_offsets() == {0: 100, 1: 101, 2: 102, 3: 103}  # the bad one's too
    assert batch.timestamps.tolist() == [111, -1, 9]


def test_matrix_lays_columns_out_as_the_bank_has_them() -> None:
    bank = Bank(template=None)  # type: ignore[arg-type]
    bank.columns(["y", "w"])
    batch = JsonEventDecoder().decode_batch(
        [
            b'{"event_id": "a", "key": "k", "features": {"x": 1, "y": 2}}',
            b'{"event_id": "b", "key": "k", "label": 1}',
        ]
    )
    X = batch.matrix(bank)
    assert bank.features == ["y", "w", "x"]
    assert X.tolist() == [[2.0, 0.0, 1.0], [0.0, 0.0, 0.0]]
    same = Bank(template=None)  # type: ignore[arg-type]
    assert batch.matrix(same) is batch.X  # columns already line up: no copy


def test_confluent_framed_json_is_read() -> None:
    header = b"\x00\x00\x00\x00\x2a"
    values = [header + v for v in EventEncoder().encode_batch(good_events())]
    values.append(b'{"event_id": "plain", "key": "k", "features": {"x": 1, "y": 2}}')
    values.append(b"\x00\x00")
    batch = JsonEventDecoder().decode_batch(values)
    assert batch.event_ids[-1] == "plain" and len(batch) == len(good_events()) + 1
    assert [(e.index, e.reason) for e in batch.errors] == [(len(values) - 1, MALFORMED)]


def test_numpy_features_and_labels_encode() -> None:
    event = Event("e", "k", np.array([1.0, 2.0]), label=np.int64(3))  # type: ignore[arg-type]
    for fmt in FORMATS:
        batch = decoder_for(fmt).decode_batch([EventEncoder(format=fmt)(event)])
        assert batch.X.tolist() == [[1.0, 2.0]] and batch.labels == [3]


def test_unknown_format() -> None:
    with pytest.raises(ValueError, match="unknown format"):
        EventEncoder(format="xml")


def test_the_learned_fast_path_gives_the_same_answers() -> None:
    """After a uniform batch the decoder reads features straight into a struct of those names;
    whatever the next batches hold, the results must be those of the general path."""
    decoder = JsonEventDecoder()
    general = JsonEventDecoder()
    general._uniform_names = lambda names: None  # type: ignore[method-assign]  # never learns
    batches = [
        [b'{"event_id": "a", "key": "k", "features": {"x": 1, "y": 2}}'],
        [b'{"event_id": "b", "key": "k", "features": {"y": 3, "x": 4}}'],  # other order
        [
            b'{"event_id": "c", "key": "k", "features": {"x": 5, "y": 6, "z": 7}}',
            b'{"event_id": "d", "key": "k", "features": {"x": 8}}',
        ],
        [b'{"event_id": "e", "key": "k", "features": [1, 2]}', b'{"event_id": "f", "key": "k"}'],
        [b'{"event_id": "g", "key": "k", "features": {"x": NaN, "y": 1}}'],
        [b'{"event_id": "h", "key": "k", "label": 1, "features": {"x": 9, "y": 10}}'],
        # what the fast path's stricter types refuse: int ids and keys, float and negative
        # times, a missing key (the Kafka key then)
        [b'{"event_id": 7, "key": 8, "features": {"x": 1, "y": 2}, "timestamp": 1.5}'],
        [b'{"event_id": "i", "features": {"x": 1, "y": 2}, "timestamp": -4}'],
        [b'{"event_id": "j", "key": "k", "features": {"x": 1, "y": 2}, "timestamp": 2e3}'],
    ]
    for values in batches * 3:
        got = decoder.decode_batch(values, keys=[b"kafka-key"] * len(values))
        want = general.decode_batch(values, keys=[b"kafka-key"] * len(values))
        assert got.errors == want.errors
        assert got.keys == want.keys and got.timestamps.tolist() == want.timestamps.tolist()
        assert got.event_ids == want.event_ids and got.labels == want.labels
        assert [got.features(i) for i in range(len(got))] == [
            want.features(i) for i in range(len(want))
        ]
    assert decoder._fast is not None and general._fast is None
    decoder._fast_skip = 0  # (the NaN batch made it back off)
    fast = decoder.decode_batch(batches[1])
    assert fast.feature_names == ["x", "y"] and fast.X.tolist() == [[4.0, 3.0]] and fast.xs is None


def test_feature_names_msgspec_cannot_rename_stay_on_the_general_path() -> None:
    decoder = JsonEventDecoder()
    batch = decoder.decode_batch([b'{"event_id": "a", "key": "k", "features": {"\\"q\\"": 1}}'])
    assert batch.feature_names == ['"q"'] and decoder._fast is None
