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


# ---- bulk export and the restore fast path: the same bytes and rows as one model at a time

LEARNERS = [
    ("pa", {}, [True, False]),
    ("pa", {"C": 0.1, "mode": 2}, ["a", "b", "c"]),  # multiclass rows among binary ones
    ("scw", {}, [0, 1]),
    ("scw", {"covariance": "diagonal"}, [1.5, -2.0, 3.0]),
    ("scw", {"covariance": "full"}, ["x", "y"]),
    ("pa-regressor", {}, None),
]


def _trained_store(algorithm: str, params: dict, labels: list | None, seed: int, n: int = 40,
                   n_features: int = 3) -> ModelStore:
    registry = default_registry()
    store = ModelStore(registry.create(algorithm, params), registry)
    rng = np.random.default_rng(seed)
    keys = [f"k{i}" for i in range(n)]
    rows = store.rows_for_partitions((rng.integers(0, 4, n)).tolist(), keys)
    store.bank.columns([f"f{j}" for j in range(n_features)])
    for _ in range(4):
        picked = rows[rng.random(n) < 0.6]
        X = rng.normal(size=(len(picked), len(store.bank.features))) * 10.0 ** rng.integers(-3, 6)
        y = (X[:, 0].tolist() if labels is None
             else [labels[j] for j in rng.integers(0, len(labels), len(picked))])
        store.bank.learn(picked, X, y)
        store.mark_learned(picked)
        store.learned_offset[picked] = rng.integers(-1, 2**62, len(picked))
        store.scored[picked] += rng.integers(0, 2**40, len(picked))
        store.correct[picked] += rng.integers(0, 3, len(picked))
        store.abs_err[picked] += rng.random(len(picked)) * 1e9
        store.sq_err[picked] += rng.random(len(picked))
    return store


@pytest.mark.parametrize(("algorithm", "params", "labels"), LEARNERS)
@pytest.mark.parametrize("seed", range(5))
def test_a_commit_exports_the_bytes_each_model_would_alone(algorithm, params, labels, seed):
    store = _trained_store(algorithm, params, labels, seed)
    dirty = np.flatnonzero(store.dirty)
    alone = [(int(store.partition[r]), store.row_key[r], store.export(store.row_key[r]),
              int(store.learned_offset[r])) for r in dirty.tolist()]
    store.delete(store.row_key[int(dirty[0])])  # a key deleted since it learned: not written
    assert store.take_changes() == alone[1:]
    assert store.take_changes() == []


def test_the_example_plugin_exports_through_its_loop_bank():
    pytest.importorskip("oml_perceptron")
    registry = default_registry()
    store = ModelStore(registry.create("perceptron"), registry)
    rows = store.rows_for_partitions([0, 1], ["a", "b"])
    store.bank.columns(["x"])
    store.bank.learn(rows, np.array([[1.0], [-1.0]]), [True, False])
    store.mark_learned(rows)
    assert [v for _, _, v, _ in store.take_changes()] == [store.export("a"), store.export("b")]


@pytest.mark.parametrize(("algorithm", "params", "labels"), LEARNERS)
def test_restored_models_equal_their_source_whichever_way_they_load(algorithm, params, labels):
    """The first state of a layout is loaded through the learner, the others straight into
    the bank: every model comes back as it was, bookkeeping included, and predicts the same."""
    source = _trained_store(algorithm, params, labels, seed=7, n=60)
    changes = source.take_changes()
    registry = default_registry()
    restored = ModelStore(registry.create(algorithm, params), registry)
    for partition, key, value, _ in changes:
        restored.load(partition, key, value)
    assert restored._layouts  # the fast path was open
    for _, key, _, _ in changes:
        assert restored.export(key) == source.export(key)
    X = np.random.default_rng(0).normal(size=(len(changes), len(source.bank.features)))
    keys = [key for _, key, _, _ in changes]
    ours = restored.bank.predict(np.array([restored.rows[k] for k in keys]), X)
    theirs = source.bank.predict(np.array([source.rows[k] for k in keys]), X)
    assert ours.labels == theirs.labels
    if theirs.proba is not None:
        assert ours.classes == theirs.classes and np.array_equal(ours.proba, theirs.proba)


def _state_of(store: ModelStore, key: str):
    from oml.codecs.state import decode_state

    return decode_state(store.export(key))


@pytest.mark.parametrize("damage", ["nan", "negative_updates", "other_params", "bad_shape"])
def test_a_bad_state_of_a_known_layout_is_refused_as_before(damage):
    import dataclasses

    from oml.codecs.state import encode_state

    source = _trained_store("pa", {}, [True, False], seed=3, n=4)
    good = [(p, k, v) for p, k, v, _ in source.take_changes()]
    store = ModelStore(default_registry().create("pa"), default_registry())
    store.load(*good[0])  # the layout is now known
    state = _state_of(source, good[1][1])
    if damage == "nan":
        bad = dataclasses.replace(state, arrays={**state.arrays, "b": np.array([np.nan])})
    elif damage == "negative_updates":
        bad = dataclasses.replace(state, n_updates=-1)
    elif damage == "other_params":
        bad = dataclasses.replace(state, params={**state.params, "C": 2.0})
    else:
        bad = dataclasses.replace(state, arrays={**state.arrays, "w": np.zeros((1, 7))})
    with pytest.raises((StateError, ValueError)):
        store.load(0, "bad", encode_state(bad))
    assert "bad" not in store.rows


@pytest.mark.parametrize(("algorithm", "params", "labels"), LEARNERS)
def test_restore_in_bulk_equals_restore_one_at_a_time(algorithm, params, labels):
    """load_many (states decoded a layout at a time, put into rows a group at a time) gives
    every key the model and bookkeeping that load gives it, one key after another."""
    source = _trained_store(algorithm, params, labels, seed=11, n=200, n_features=5)
    records = [(key, value) for _, key, value, _ in source.take_changes()]
    registry = default_registry()
    one, bulk = (ModelStore(registry.create(algorithm, params), registry) for _ in range(2))
    for key, value in records:
        one.load(2, key, value)
    grouped = []
    add_states = bulk.bank.add_states
    bulk.bank.add_states = lambda *a: grouped.append(len(a[2])) or add_states(*a)  # type: ignore[method-assign]
    bulk.load_many(2, records)
    assert sum(grouped) > len(records) // 2  # most went in groups
    assert sorted(bulk.rows) == sorted(one.rows) == sorted(k for k, _ in records)
    assert bulk.bank.features == one.bank.features
    for key, _ in records:
        assert bulk.export(key) == one.export(key) == source.export(key)
        assert bulk.partition[bulk.rows[key]] == 2
    X = np.random.default_rng(1).normal(size=(len(records), len(one.bank.features)))
    a = one.bank.predict(np.array([one.rows[k] for k, _ in records]), X)
    b = bulk.bank.predict(np.array([bulk.rows[k] for k, _ in records]), X)
    assert a.labels == b.labels
    if a.proba is not None:
        assert np.array_equal(a.proba, b.proba)


def test_bulk_decoding_takes_most_states_in_groups_and_the_odd_ones_alone():
    from oml.codecs.state import decode_state, decode_states

    source = _trained_store("pa", {}, [True, False], seed=5, n=300)
    values = [value for _, _, value, _ in source.take_changes()]
    values[7] = values[7][:30] + bytes([values[7][30] ^ 0x10]) + values[7][31:]  # a bit flipped
    groups, single = decode_states(values)
    grouped = {int(i): g.state(j) for g in groups for j, i in enumerate(g.indices.tolist())}
    assert 7 in single and 7 not in grouped
    assert len(grouped) > 0.9 * len(values)
    assert sorted([*grouped, *single]) == list(range(len(values)))
    for i, state in grouped.items():
        expected = decode_state(values[i])
        assert state == expected and list(state.extra.items()) == list(expected.extra.items())


@pytest.mark.parametrize("damage", ["flipped_bit", "nan", "other_params"])
def test_a_bad_state_among_many_is_named_by_load_many(damage):
    import dataclasses

    from oml.codecs.state import decode_state, encode_state
    from oml.state.models import LoadError

    source = _trained_store("pa", {}, [True, False], seed=2, n=100)
    records = [(key, value) for _, key, value, _ in source.take_changes()]
    bad_at = 40
    key, value = records[bad_at]
    if damage == "flipped_bit":
        value = value[:-3] + bytes([value[-3] ^ 1]) + value[-2:]
    else:
        state = decode_state(value)
        if damage == "nan":
            nan = state.arrays["w"] * np.nan
            state = dataclasses.replace(state, arrays={**state.arrays, "w": nan})
        else:
            state = dataclasses.replace(state, params={**state.params, "C": 9.0})
        value = encode_state(state)
    records[bad_at] = (key, value)
    store = ModelStore(default_registry().create("pa"), default_registry())
    with pytest.raises(LoadError) as caught:
        store.load_many(0, records)
    assert caught.value.index == bad_at
    assert isinstance(caught.value.cause, StateError | ValueError)
