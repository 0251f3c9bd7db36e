"""Limits on hostile input (issue 8): outsized records and fields, far-off event times, the
width of list features and the column space.  Each is a dead letter with its reason, and the
rest of the batch (and later batches) decode as before."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from oml.codecs.errors import CLOCK_SKEW, TOO_LARGE, TOO_LONG, TOO_MANY_FEATURES
from oml.codecs.errors import WRONG_FEATURE_COUNT as WRONG_COUNT
from oml.codecs.events import AvroEventDecoder, Event, EventEncoder, JsonEventDecoder, event_decoder
from oml.codecs.limits import Limits
from oml.config import ConfigError, load_config

FORMATS = ["json", "avro"]
NOW_MS = 1_750_000_000_000
DAY_MS = 86_400_000


def clock() -> float:
    return NOW_MS / 1000


def decoder_for(fmt: str, **kwargs: Any) -> JsonEventDecoder | AvroEventDecoder:
    kind = JsonEventDecoder if fmt == "json" else AvroEventDecoder
    return kind(clock=clock, **kwargs)


def encode(fmt: str, *events: Event) -> list[bytes]:
    return EventEncoder(format=fmt).encode_batch(list(events))


def reasons(batch: Any) -> list[tuple[int, str]]:
    return [(e.index, e.reason) for e in batch.errors]


def good(i: int = 0, **kw: Any) -> Event:
    return Event(f"g{i}", "k", {"x": 1.0, "y": 2.0}, **kw)


# ---------------------------------------------------------------------------- sizes


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_record_over_max_message_bytes_is_too_large_and_never_parsed(fmt: str) -> None:
    big = Event("big", "k", {f"f{i}": 1.0 for i in range(90_000)})  # 1.2-1.4 MB
    values = encode(fmt, good(0), big, good(2))
    assert len(values[1]) > 1_048_588
    batch = decoder_for(fmt).decode_batch(values)
    assert reasons(batch) == [(1, TOO_LARGE)]
    assert "bytes" in batch.errors[0].message
    assert batch.event_ids == ["g0", "g2"]
    # not parsed: garbage of the same size says too_large, not malformed
    garbage = decoder_for(fmt).decode_batch([b"\xff" * 1_200_000])
    assert reasons(garbage) == [(0, TOO_LARGE)]


def test_the_size_bound_is_configurable_and_can_be_off() -> None:
    value = encode("json", good(0))[0]
    tight = JsonEventDecoder(limits=Limits(max_message_bytes=len(value) - 1))
    assert reasons(tight.decode_batch([value, None])) == [(0, TOO_LARGE), (1, "malformed")]
    off = JsonEventDecoder(limits=Limits(max_message_bytes=None, max_features=None))
    big = encode("json", Event("big", "k", {f"f{i}": 1.0 for i in range(60_000)}))
    assert off.decode_batch(big).errors == []


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "event",
    [
        Event("i" * 10_000, "k", {"x": 1.0}),
        Event("e", "k" * 257, {"x": 1.0}),
        Event("e", "k", label="L" * 5_000),
    ],
    ids=["id", "key", "label"],
)
def test_long_ids_keys_and_string_labels_are_too_long(fmt: str, event: Event) -> None:
    batch = decoder_for(fmt).decode_batch(encode(fmt, good(0), event, good(2, label="spam")))
    assert reasons(batch) == [(1, TOO_LONG)]
    assert batch.event_ids == ["g0", "g2"] and batch.labels == [None, "spam"]


def test_a_long_kafka_key_standing_in_is_too_long() -> None:
    values = [b'{"event_id": "a", "features": [1]}', b'{"event_id": "b", "features": [1]}']
    batch = JsonEventDecoder().decode_batch(values, keys=[b"k" * 300, b"fine"])
    assert reasons(batch) == [(0, TOO_LONG)] and batch.keys == ["fine"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("shape", ["dict", "list"])
def test_an_event_with_more_than_max_features_is_too_many(fmt: str, shape: str) -> None:
    wide: Any = {f"f{i}": 1.0 for i in range(11)} if shape == "dict" else [1.0] * 11
    narrow: Any = {"x": 1.0} if shape == "dict" else [1.0]
    values = encode(fmt, Event("a", "k", narrow), Event("w", "k", wide), Event("b", "k", narrow))
    batch = decoder_for(fmt, limits=Limits(max_features=10)).decode_batch(values)
    assert reasons(batch) == [(1, TOO_MANY_FEATURES)]
    assert batch.event_ids == ["a", "b"]


# ---------------------------------------------------------------------------- the column space


@pytest.mark.parametrize("fmt", FORMATS)
def test_5000_new_feature_names_are_refused_and_the_known_ones_keep_working(fmt: str) -> None:
    """Issue 8.6: one event with 5,000 names grew every model row; now it is a dead letter."""
    decoder = decoder_for(fmt, limits=Limits(max_features=5_000))
    first = decoder.decode_batch(encode(fmt, *(good(i) for i in range(3))))
    assert first.errors == [] and len(decoder.columns) == 2
    explosion = Event("boom", "k", {f"n{i}": 1.0 for i in range(5_000)})
    batch = decoder.decode_batch(encode(fmt, good(0), explosion, Event("fb", "k", label=True)))
    assert reasons(batch) == [(1, TOO_MANY_FEATURES)]
    assert batch.event_ids == ["g0", "fb"] and batch.feature_names == ["x", "y"]
    assert len(decoder.columns) == 2  # nothing of the refused event was admitted
    later = decoder.decode_batch(encode(fmt, good(5), Event("z", "k", {"x": 1.0, "z": 3.0})))
    assert later.errors == [] and len(decoder.columns) == 3  # room left: a new name is fine


def test_the_column_space_admits_events_in_order_until_full() -> None:
    decoder = JsonEventDecoder(limits=Limits(max_features=3))
    events = [
        Event("a", "k", {"x": 1.0, "y": 1.0}),
        Event("b", "k", {"z": 1.0, "w": 1.0}),  # would make 4
        Event("c", "k", {"z": 1.0}),  # 3: fits
        Event("d", "k", {"x": 2.0}),
    ]
    batch = decoder.decode_batch(encode("json", *events))
    assert reasons(batch) == [(1, TOO_MANY_FEATURES)]
    assert [batch.features(r) for r in range(len(batch))] == [
        {"x": 1.0, "y": 1.0},
        {"z": 1.0},
        {"x": 2.0},
    ]
    assert sorted(decoder.columns.names) == ["x", "y", "z"]


def test_restored_names_count_towards_the_cap() -> None:
    decoder = JsonEventDecoder(limits=Limits(max_features=3))
    decoder.restore_feature_names(["a", "b", "c"])
    batch = decoder.decode_batch(encode("json", Event("n", "k", {"d": 1.0}), good(1)))
    assert reasons(batch) == [(0, TOO_MANY_FEATURES), (1, TOO_MANY_FEATURES)]
    assert decoder.decode_batch(encode("json", Event("o", "k", {"a": 1.0}))).errors == []


# ---------------------------------------------------------------------------- event time


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_far_future_timestamp_is_clock_skew(fmt: str) -> None:
    """Issue 8.4: one "9999-12-31T23:59:59Z" expired the whole feature cache."""
    far = NOW_MS + DAY_MS + 1
    values = encode(fmt, good(0, timestamp=NOW_MS), good(1, timestamp=far), good(2))
    if fmt == "json":
        values.append(
            b'{"event_id": "z", "key": "k", "label": 1, "timestamp": "9999-12-31T23:59:59Z"}'
        )
    batch = decoder_for(fmt).decode_batch(values)
    expected = [(1, CLOCK_SKEW)] + ([(3, CLOCK_SKEW)] if fmt == "json" else [])
    assert reasons(batch) == expected
    assert "ahead of the processing clock" in batch.errors[0].message
    assert batch.timestamps.tolist() == [NOW_MS, -1] and batch.clamped == 0
    old = decoder_for(fmt).decode_batch(encode(fmt, good(0, timestamp=5)))  # any age, by default
    assert old.errors == [] and old.timestamps.tolist() == [5]


def test_clamping_moves_times_to_the_window_edge_and_counts_them() -> None:
    limits = Limits(max_timestamp_age_ms=DAY_MS, timestamp_skew="clamp")
    decoder = JsonEventDecoder(limits=limits, clock=clock)
    stamps = [NOW_MS, NOW_MS + 10 * DAY_MS, 5, None]
    values = encode("json", *(good(i, timestamp=t) for i, t in enumerate(stamps)))
    batch = decoder.decode_batch(values, timestamps=[1, 2, 3, NOW_MS + 2 * DAY_MS])
    assert batch.errors == [] and batch.clamped == 3
    assert batch.timestamps.tolist() == [NOW_MS, NOW_MS + DAY_MS, NOW_MS - DAY_MS, NOW_MS + DAY_MS]


def test_an_old_kafka_timestamp_past_the_age_bound_is_clock_skew() -> None:
    decoder = JsonEventDecoder(limits=Limits(max_timestamp_age_ms=DAY_MS), clock=clock)
    batch = decoder.decode_batch(encode("json", good(0), good(1)), timestamps=[NOW_MS, 1])
    assert reasons(batch) == [(1, CLOCK_SKEW)] and "behind" in batch.errors[0].message


def test_the_clock_is_read_per_batch() -> None:
    now = [NOW_MS / 1000]
    decoder = JsonEventDecoder(clock=lambda: now[0])
    value = encode("json", good(0, timestamp=NOW_MS + 2 * DAY_MS))
    assert reasons(decoder.decode_batch(value)) == [(0, CLOCK_SKEW)]
    now[0] += 2 * DAY_MS / 1000
    assert decoder.decode_batch(value).errors == []


def test_iso_times_are_checked_too() -> None:
    when = dt.datetime.fromtimestamp(NOW_MS / 1000 + 3 * 86_400, dt.UTC).isoformat()
    value = b'{"event_id": "a", "key": "k", "features": [1], "timestamp": "%s"}' % when.encode()
    assert reasons(JsonEventDecoder(clock=clock).decode_batch([value])) == [(0, CLOCK_SKEW)]


# ---------------------------------------------------------------------------- list width


def lists(fmt: str, n: int, width: int, start: int = 0) -> list[bytes]:
    return encode(fmt, *(Event(f"e{start + i}", f"k{i}", [1.0] * width) for i in range(n)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hostile_first_list_does_not_pin_the_width(fmt: str) -> None:
    """Issue 8.5: four 5-value lists, first on each partition, sent 2,000 valid 4-value events
    to the dead-letter topic.  Now the majority decides, whatever arrives first."""
    decoder = decoder_for(fmt)
    together = decoder.decode_batch(lists(fmt, 4, 5) + lists(fmt, 2_000, 4, 10))
    assert reasons(together) == [(i, WRONG_COUNT) for i in range(4)]
    assert len(together) == 2_000 and decoder.n_features == 4

    apart = decoder_for(fmt)
    for p in range(4):  # each 5-list alone in a batch, before any valid event
        assert apart.decode_batch(lists(fmt, 1, 5, p)).errors == []
    batch = apart.decode_batch(lists(fmt, 2_000, 4, 10))
    assert batch.errors == [] and apart.n_features == 4
    assert reasons(apart.decode_batch(lists(fmt, 1, 5))) == [(0, WRONG_COUNT)]


def test_a_tie_keeps_the_earlier_majority() -> None:
    decoder = JsonEventDecoder()
    assert reasons(decoder.decode_batch(lists("json", 2, 2) + lists("json", 1, 3))) == [
        (2, WRONG_COUNT)
    ]
    assert reasons(decoder.decode_batch(lists("json", 1, 3))) == [(0, WRONG_COUNT)]  # 2 to 2


def test_a_restored_width_is_kept_and_a_configured_one_wins() -> None:
    decoder = JsonEventDecoder()
    decoder.restore_feature_count(3)
    assert decoder.n_features == 3
    assert reasons(decoder.decode_batch(lists("json", 5, 4))) == [
        (i, WRONG_COUNT) for i in range(5)
    ]
    configured = JsonEventDecoder(n_features=4)
    assert configured.decode_batch(lists("json", 2, 4)).errors == []
    configured.restore_feature_count(4)  # agrees: fine
    with pytest.raises(ValueError, match="configured"):
        configured.restore_feature_count(3)


# ---------------------------------------------------------------------------- configuration


def test_the_limits_come_from_the_configuration() -> None:
    env = {
        "OML_MESSAGES__MAX_MESSAGE_BYTES": "100",
        "OML_MESSAGES__MAX_ID_LENGTH": "3",
        "OML_MESSAGES__TIMESTAMP_SKEW": "clamp",
        "OML_MESSAGES__MAX_TIMESTAMP_SKEW_MS": "none",
        "OML_MODEL__MAX_FEATURES": "2",
        "OML_MODEL__N_FEATURES": "2",
    }
    config = load_config(None, env, {})
    decoder = event_decoder(config)
    assert decoder.limits == Limits(
        max_message_bytes=100,
        max_id_length=3,
        max_features=2,
        max_timestamp_skew_ms=None,
        timestamp_skew="clamp",
    )
    assert decoder.n_features == 2
    batch = decoder.decode_batch(
        [
            b'{"event_id": "abcd", "key": "k", "features": [1, 2]}',
            b'{"event_id": "a", "key": "k", "features": [1, 2, 3]}',
            b'{"event_id": "b", "key": "k", "features": [1, 2], "pad": "%s"}' % (b"x" * 100),
            b'{"event_id": "c", "key": "k", "features": [1, 2], "timestamp": 99999999999999}',
        ]
    )
    assert reasons(batch) == [(0, TOO_LONG), (1, TOO_MANY_FEATURES), (2, TOO_LARGE)]
    assert batch.event_ids == ["c"]


def test_the_defaults_are_the_documented_ones() -> None:
    config = load_config(None, {}, {})
    assert Limits.from_config(config.messages, config.model) == Limits()
    assert Limits().max_message_bytes == 1_000_000 < 1_048_588
    assert Limits().max_timestamp_skew_ms == DAY_MS and Limits().max_features == 1_000


@pytest.mark.parametrize(
    ("env", "error"),
    [
        ({"OML_MODEL__MAX_FEATURES": "0"}, "at least 1"),
        ({"OML_MESSAGES__MAX_MESSAGE_BYTES": "-1"}, "at least 1"),
        ({"OML_MESSAGES__TIMESTAMP_SKEW": "ignore"}, "dead_letter, clamp"),
    ],
)
def test_bad_limits_are_config_errors(env: dict[str, str], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        load_config(None, env, {})


def test_n_features_and_feature_names_must_agree() -> None:
    env = {"OML_MODEL__N_FEATURES": "3", "OML_MESSAGES__FEATURE_NAMES": "a,b"}
    with pytest.raises(ConfigError, match="n_features"):
        event_decoder(load_config(None, env, {}))
