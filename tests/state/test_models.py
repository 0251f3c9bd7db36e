from __future__ import annotations

import numpy as np
import pytest

from oml import StateError
from oml.plugins import default_registry
from oml.state.models import ModelStore


def test_changes_are_coalesced_and_round_trip_with_bookkeeping():
    store = ModelStore(default_registry().create("pa"))
    rows = store.rows_for_partitions([0, 2, 0], ["a", "b", "a"])
    assert rows[0] == rows[2] != rows[1]
    cols = store.bank.columns(["x"])
    X = np.zeros((2, len(store.bank.features)))
    X[:, cols[0]] = [1.0, -1.0]
    for _ in range(100):
        store.bank.learn(rows[:2], X, [True, False])
        store.mark_learned(rows[:2])
    store.learned_offset[rows[0]] = 41
    changes = store.take_changes()
    # a hundred updates, one write each, to each key's own partition
    assert [(p, key, offset) for p, key, _, offset in changes] == [(0, "a", 41), (2, "b", -1)]
    assert store.take_changes() == []

    other = ModelStore(default_registry().create("pa"))
    other.load(3, "a", changes[0][2])
    assert other.learned_offset[other.rows["a"]] == 41
    assert other.export("a") == store.export("a")  # the model and its bookkeeping


def test_a_learned_offset_of_zero_survives_the_round_trip():
    store = ModelStore(default_registry().create("pa"))
    row = store.rows_for_partitions([0], ["a"])
    store.learned_offset[row] = 0
    store.mark_learned(row)
    (_, _, value, _), = store.take_changes()
    other = ModelStore(default_registry().create("pa"))
    other.load(0, "a", value)
    assert other.learned_offset[other.rows["a"]] == 0


def test_drop_partition_forgets_its_keys():
    store = ModelStore(default_registry().create("pa"))
    store.rows_for_partitions([0], ["a"])
    store.rows_for_partitions([1], ["b"])
    store.drop_partition(0)
    assert list(store.rows) == ["b"]


def test_undecodable_state_raises():
    store = ModelStore(default_registry().create("pa"))
    with pytest.raises(StateError):
        store.load(0, "a", b"garbage")
