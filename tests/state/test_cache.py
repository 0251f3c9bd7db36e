from __future__ import annotations

import numpy as np
import pytest

from oml.state.cache import CacheRecordError, FeatureCache, decode_cached


def put(cache, ids, ts, partition=0, key="k"):
    X = np.arange(len(ids) * 2, dtype=float).reshape(len(ids), 2) + 1
    cache.put_many(ids, [key] * len(ids), X, ["yes"] * len(ids), ts, list(range(len(ids))),
                   [partition] * len(ids))


def test_an_event_resolved_before_the_commit_is_never_written():
    cache = FeatureCache(ttl_ms=10_000, max_entries=100)
    put(cache, ["a", "b"], [1, 2], partition=3)
    cache.drop_many(["a"], [5])
    changes = cache.take_changes(["f0", "f1"])
    assert [(p, event_id) for p, event_id, _, _ in changes] == [(3, "b")]
    record = decode_cached(changes[0][2])
    assert record.key == "k" and record.features == {"f0": 3.0, "f1": 4.0} and record.ts == 2
    # b was written, so resolving it later owes a tombstone; a was never written, so nothing
    cache.drop_many(["b"], [7])
    assert cache.take_changes(["f0", "f1"]) == [(3, "b", None, 7)]


def test_ttl_in_event_time_expires_and_tombstones_written_entries():
    cache = FeatureCache(ttl_ms=100, max_entries=100)
    put(cache, ["old", "mid"], [0, 70])
    cache.take_changes(["f0", "f1"])  # both written
    put(cache, ["new"], [160])
    assert cache.expire({0: 9}) == 1
    assert "old" not in cache.entries and "mid" in cache.entries
    assert cache.expired == 1
    assert (0, "old", None, 9) in cache.take_changes(["f0", "f1"])


def test_a_far_future_timestamp_cannot_expire_the_cache():
    now_ms = 1_800_000_000_000
    cache = FeatureCache(ttl_ms=60_000, max_entries=100, max_lead_ms=5_000,
                         now=lambda: now_ms / 1000)
    put(cache, ["a", "b"], [now_ms - 1_000, now_ms])
    put(cache, ["liar"], [253402300799000])  # 9999-12-31T23:59:59Z
    assert cache.clock == now_ms + 5_000  # as far as the wall clock allows, no further
    assert cache.expire({0: 3}) == 0 and sorted(cache.entries) == ["a", "b", "liar"]
    cache.advance(now_ms + 3_000)  # behind the clock already: no change
    assert cache.clock == now_ms + 5_000


def test_size_cap_evicts_the_oldest():
    cache = FeatureCache(ttl_ms=10**9, max_entries=2)
    put(cache, ["a", "b", "c"], [1, 2, 3])
    cache.expire({0: 3})
    assert sorted(cache.entries) == ["b", "c"] and cache.evicted == 1


def test_resent_event_id_replaces_a_written_entry_without_resurrection():
    cache = FeatureCache(ttl_ms=10**9, max_entries=10)
    put(cache, ["a"], [1])
    cache.take_changes(["f0", "f1"])
    put(cache, ["a"], [2])
    cache.drop_many(["a"], [4])
    assert cache.take_changes(["f0", "f1"]) == [(0, "a", None, 0)]


def test_dropping_a_partition_forgets_only_its_entries():
    cache = FeatureCache(ttl_ms=10**9, max_entries=10)
    put(cache, ["a"], [1], partition=0)
    put(cache, ["b"], [1], partition=1)
    cache.drop_partition(0)
    assert list(cache.entries) == ["b"]


def test_bad_records_are_refused():
    with pytest.raises(CacheRecordError):
        decode_cached(b"not json")
    with pytest.raises(CacheRecordError, match="version"):
        decode_cached(b'{"v": 9, "key": "k", "features": {}, "ts": 1, "offset": 0}')


def test_rows_are_recycled_and_new_columns_read_as_zero():
    cache = FeatureCache(ttl_ms=10**9, max_entries=10**6)
    for round_ in range(5):
        ids = [f"{round_}-{i}" for i in range(1000)]
        put(cache, ids, [1] * 1000)
        assert cache.features_of([cache.entries[ids[3]]], 3).tolist() == [[7.0, 8.0, 0.0]]
        cache.drop_many(ids, [0] * 1000)
    assert len(cache.features) <= 2048  # freed rows were used again
    put(cache, ["x", "x"], [1, 2])  # the same id twice in one call: the last one stays
    assert cache.entries["x"][3] == 2 and len(cache) == 1
