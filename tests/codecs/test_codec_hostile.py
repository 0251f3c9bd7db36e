"""Hostile input (issue 8): no message, however built, makes the decoder raise; each bad one is
a dead letter with the most specific reason and the rest of its batch decodes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oml.codecs.errors import INTERNAL_ERROR, TOO_DEEP
from oml.codecs.events import AvroEventDecoder, Event, EventEncoder, JsonEventDecoder
from oml.codecs.limits import Limits

SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow], max_examples=300)

GOOD = b'{"event_id": "g%d", "key": "k", "features": [1, 2, 3, 4]}'
NAMED = b'{"event_id": "n", "key": "k", "features": {"x": 1, "y": 2}}'
POISON_PILL = (
    b'{"event_id":"x","key":"k","features":[1,2,3,4],"extra":' + b"[" * 1000 + b"]" * 1000 + b"}"
)
"""The message of issue 8 that crash-looped the service (msgspec raises RecursionError)."""


def test_the_poison_pill_is_a_dead_letter_and_its_batch_decodes() -> None:
    values = [GOOD % 0, POISON_PILL, GOOD % 2]
    batch = JsonEventDecoder().decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == [(1, TOO_DEEP)]
    assert batch.event_ids == ["g0", "g2"] and batch.index.tolist() == [0, 2]
    assert batch.X.tolist() == [[1, 2, 3, 4]] * 2


DEEP = [
    (TOO_DEEP, POISON_PILL),
    (
        TOO_DEEP,
        b'{"event_id":"x","key":"k","features":[1],"o":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
    ),
    (TOO_DEEP, b'{"a":' * 100_000),
    # a typed field refuses the first bracket before the depth matters
    ("bad_label", b'{"event_id":"x","key":"k","label":' + b"[" * 5000 + b"]" * 5000 + b"}"),
    ("schema_mismatch", b'{"event_id":"x","key":"k","features":' + b'{"a":' * 3000 + b"}"),
    ("schema_mismatch", b"[" * 100_000),
]


@pytest.mark.parametrize(("reason", "pill"), DEEP)
def test_deep_nesting_anywhere_is_a_dead_letter(reason: str, pill: bytes) -> None:
    batch = JsonEventDecoder().decode_batch([pill, GOOD % 1])
    assert [(e.index, e.reason) for e in batch.errors] == [(0, reason)]
    assert batch.event_ids == ["g1"]


def test_the_poison_pill_alone_and_through_the_fast_path() -> None:
    decoder = JsonEventDecoder()
    named = b'{"event_id": "n%d", "key": "k", "features": {"a": 1, "b": 2}}'
    decoder.decode_batch([named % i for i in range(3)])  # learns the fast path for a, b
    for values in ([POISON_PILL], [named % 7, POISON_PILL]):
        batch = decoder.decode_batch(values)
        assert [e.reason for e in batch.errors] == [TOO_DEEP]
        assert len(batch) == len(values) - 1


class _FailsOn(JsonEventDecoder):
    """A decoder with an injected fault: its parser raises for one message, as a bug would."""

    def __init__(self, marker: bytes) -> None:
        super().__init__()
        self.marker = marker

    def _parse(self, values: Sequence[bytes | None]):  # type: ignore[no-untyped-def]
        if any(v is not None and self.marker in v for v in values):
            raise ZeroDivisionError("injected")
        return super()._parse(values)


def test_an_unexpected_exception_is_pinned_to_its_message() -> None:
    values = [GOOD % 0, b'{"event_id": "boom", "key": "k", "features": [1, 2, 3, 4]}', GOOD % 2]
    batch = _FailsOn(b"boom").decode_batch(values, partitions=[5, 6, 7], timestamps=[1, 2, 3])
    assert [(e.index, e.reason) for e in batch.errors] == [(1, INTERNAL_ERROR)]
    assert "ZeroDivisionError" in batch.errors[0].message
    assert batch.event_ids == ["g0", "g2"] and batch.index.tolist() == [0, 2]
    assert batch.partitions.tolist() == [5, 7] and batch.timestamps.tolist() == [1, 3]
    assert batch.X.tolist() == [[1, 2, 3, 4]] * 2 and batch.xs is None


def test_one_by_one_keeps_differing_names_and_the_other_errors() -> None:
    values = [
        b'{"event_id": "a", "key": "k", "features": {"x": 1}}',
        b"boom",
        b"not json",
        b'{"event_id": "b", "key": "k", "features": {"y": 2}}',
        b'{"event_id": "c", "key": "k", "label": true}',
    ]
    batch = _FailsOn(b"boom").decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == [(1, INTERNAL_ERROR), (2, "malformed")]
    assert batch.index.tolist() == [0, 3, 4]
    assert [batch.features(r) for r in range(3)] == [{"x": 1.0}, {"y": 2.0}, None]
    assert batch.labels == [None, None, True]


# ---------------------------------------------------------------------------- never raises

json_like = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def hostile_json(draw: st.DrawFn) -> bytes | None:
    """Random bytes, mangled good messages, or objects with the right field names and any
    values (the shapes a fuzzer of our schema would try)."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        good = EventEncoder()(Event("e", "k", {"x": 1.0}, timestamp=5))
        cut = draw(st.integers(0, len(good)))
        return good[:cut] + draw(st.binary(max_size=8)) + good[cut:]
    if kind == 2:
        return None
    import json

    names = st.sampled_from(["event_id", "key", "features", "label", "timestamp", "other"])
    obj = draw(st.dictionaries(names, json_like, max_size=6))
    text = json.dumps(obj)  # NaN and Infinity included
    if kind == 4:
        depth = draw(st.integers(0, 3000))
        text = text[:-1] + (", " if len(obj) else "") + '"deep": ' + "[" * depth + "]" * depth + "}"
    return text.encode()


TIGHT = Limits(
    max_message_bytes=200,
    max_id_length=3,
    max_key_length=3,
    max_label_length=3,
    max_features=3,
    max_timestamp_skew_ms=0,
    max_timestamp_age_ms=10,
)
"""Every bound small, so that the fuzz goes through every limit check too."""


@SETTINGS
@given(
    values=st.lists(hostile_json(), max_size=8),
    split=st.integers(0, 8),
    limits=st.sampled_from([Limits(), TIGHT, replace(TIGHT, timestamp_skew="clamp")]),
)
def test_the_json_decoder_never_raises(
    values: list[bytes | None], split: int, limits: Limits
) -> None:
    decoder = JsonEventDecoder(limits=limits)
    for chunk in (values[:split], values[split:], values):
        batch = decoder.decode_batch([*chunk, NAMED], timestamps=[5] * (len(chunk) + 1))
        reported = sorted(e.index for e in batch.errors)
        assert sorted([*reported, *batch.index.tolist()]) == list(range(len(chunk) + 1))
        if limits == Limits():
            assert batch.index.tolist()[-1] == len(chunk)  # the good message decoded
        assert len(batch.event_ids) == len(batch.keys) == len(batch.X) == len(batch.timestamps)


@st.composite
def hostile_avro(draw: st.DrawFn) -> bytes | None:
    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return None
    good = EventEncoder(format="avro")(Event("e", "k", {"x": 1.0}, label="y", timestamp=5))
    cut = draw(st.integers(0, len(good)))
    return good[:cut] + draw(st.binary(max_size=8)) + good[cut + draw(st.integers(0, 3)) :]


@SETTINGS
@given(values=st.lists(hostile_avro(), max_size=8), tight=st.booleans())
def test_the_avro_decoder_never_raises(values: list[bytes | None], tight: bool) -> None:
    good = EventEncoder(format="avro")(Event("g", "k", {"x": 1.0}))
    decoder = AvroEventDecoder(limits=TIGHT if tight else None)
    batch = decoder.decode_batch([*values, good], keys=[b"kafka-key"] * (len(values) + 1))
    reported = sorted(e.index for e in batch.errors)
    assert sorted([*reported, *batch.index.tolist()]) == list(range(len(values) + 1))
    if not tight:
        assert batch.index.tolist()[-1] == len(values)
