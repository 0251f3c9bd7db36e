"""One battery of checks, run on every learner the registry knows (plugins included).

It starts with River's own estimator checks (``river.checks``), run on each learner with its
defaults and on the parameter sets whose code paths the defaults miss, then checks oml's own
contracts: the state round trip, refused input, the bank.  The example plugin
(``examples/oml-perceptron``) is installed by the test setup (see the README's "Tests").
"""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import base as river_base
from river import checks as river_checks

from oml import InvalidInput, StateError, decode_model, encode_model
from oml.bank import bank_for
from oml.codecs.state import decode_state, encode_state
from oml.learner import Learner
from oml.plugins import load_registry

REGISTRY = load_registry()
NAMES = REGISTRY.names()

# River's checks run on every learner with its defaults, and on these parameter sets too.
RIVER_VARIANTS = [("scw", {"covariance": "diagonal"})]


def test_builtins_and_plugin_are_registered(example_plugin):
    assert {"pa", "pa-regressor", "scw", example_plugin} <= set(NAMES)
    assert REGISTRY.broken == {}


def is_regressor(model) -> bool:
    return isinstance(model, river_base.Regressor)


def stream(model, n: int, seed: int, n_features: int = 3, n_classes: int = 3):
    """A random learnable stream; features sometimes missing, labels in several types."""
    rng = random.Random(seed)
    w = [[rng.gauss(0, 1) for _ in range(n_features)] for _ in range(n_classes)]
    for _ in range(n):
        x = {f"f{j}": rng.gauss(0, 2) for j in range(n_features) if rng.random() > 0.1}
        if not x:
            x = {"f0": 1.0}
        if is_regressor(model):
            y = sum(w[0][j] * x.get(f"f{j}", 0.0) for j in range(n_features)) + rng.gauss(0, 0.1)
        else:
            scores = [sum(wc[j] * x.get(f"f{j}", 0.0) for j in range(n_features)) for wc in w]
            y = ["cat", "dog", "emu"][scores.index(max(scores))]
        yield x, y


def predictions(model, xs):
    out = [model.predict_one(x) for x in xs]
    if hasattr(model, "predict_proba_one") and not is_regressor(model):
        out += [sorted(model.predict_proba_one(x).items(), key=repr) for x in xs]
    return out


@pytest.fixture(params=NAMES)
def model(request) -> Learner:
    return REGISTRY.create(request.param)


def _river_checks():
    for name, params in [(name, {}) for name in NAMES] + RIVER_VARIANTS:
        shown = "-".join([name, *(f"{k}={v}" for k, v in params.items())])
        for check in river_checks.yield_checks(REGISTRY.create(name, params)):
            yield pytest.param(name, params, check, id=f"{shown}-{check.__name__}")


@pytest.mark.parametrize(("name", "params", "check"), list(_river_checks()))
def test_river_estimator_check(name, params, check):
    check(REGISTRY.create(name, params))


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(0, 60))
def test_state_round_trip_predicts_bit_identically(seed, n):
    for name in NAMES:
        model = REGISTRY.create(name)
        events = list(stream(model, n + 20, seed))
        for x, y in events[:n]:
            model.learn_one(x, y)
        again = decode_model(encode_model(model))
        assert type(again) is type(model)
        assert again.export_state() == model.export_state()
        probes = [x for x, _ in events[n:]]
        assert predictions(again, probes) == predictions(model, probes)
        # and they keep learning the same way
        for x, y in events[n:]:
            model.learn_one(x, y)
            again.learn_one(x, y)
        assert encode_model(again) == encode_model(model)


BAD_FEATURES = [
    pytest.param({"f0": math.nan}, id="nan"),
    pytest.param({"f0": math.inf}, id="inf"),
    pytest.param({"f0": -math.inf, "f1": 1.0}, id="minus-inf"),
    pytest.param({"f0": "3.0"}, id="string-value"),
    pytest.param({"f0": None}, id="none-value"),
    pytest.param([1.0, 2.0], id="not-a-dict"),
    pytest.param({}, id="empty"),
]


@pytest.mark.parametrize("x", BAD_FEATURES)
def test_bad_features_are_refused_and_leave_the_model_unchanged(model, x):
    for xi, yi in stream(model, 30, seed=1):
        model.learn_one(xi, yi)
    before = encode_model(model)
    label = 1.0 if is_regressor(model) else "cat"
    with pytest.raises(InvalidInput):
        model.learn_one(x, label)
    with pytest.raises(InvalidInput):
        model.predict_one(x)
    assert encode_model(model) == before


@pytest.mark.parametrize("label", [None, math.nan, ["a"], {"a": 1}])
def test_labels_that_cannot_be_taken_are_refused(model, label):
    for xi, yi in stream(model, 10, seed=2):
        model.learn_one(xi, yi)
    before = encode_model(model)
    with pytest.raises(InvalidInput):
        model.learn_one({"f0": 1.0}, label)
    assert encode_model(model) == before


def test_an_unseen_label_never_crashes(model):
    if is_regressor(model):
        pytest.skip("regressors have no label set")
    for xi, yi in stream(model, 20, seed=3):
        model.learn_one(xi, yi)
    for new in ["zebra", 7, True, 2.5]:
        model.learn_one({"f0": 1.0, "f1": -1.0}, new)
        model.predict_one({"f0": 1.0})
    assert "zebra" in model.predict_proba_one({"f0": 1.0})


def test_decoding_damaged_state_raises_clear_errors(model):
    for xi, yi in stream(model, 30, seed=4):
        model.learn_one(xi, yi)
    data = encode_model(model)
    damaged = {
        "truncated": data[: len(data) // 2],
        "header only": data[:9],
        "empty": b"",
        "flipped byte": data[:-3] + bytes([data[-3] ^ 0xFF]) + data[-2:],
        "foreign": b'{"weights": [1, 2, 3]}',
        "trailing": data + b"\x00",
    }
    for what, bad in damaged.items():
        with pytest.raises(StateError):
            decode_model(bad)
        assert what  # name each case in the failure message


def test_unknown_algorithm_and_version_are_refused(model):
    state = model.export_state()
    newer = type(state)(**{**state.__dict__, "version": type(model).state_version + 1})
    with pytest.raises(StateError, match="state version"):
        decode_model(encode_state(newer))
    stranger = type(state)(**{**state.__dict__, "algorithm": "no-such-algorithm"})
    with pytest.raises(StateError, match="unknown algorithm"):
        decode_model(encode_state(stranger))


def test_mismatched_arrays_are_refused(model):
    for xi, yi in stream(model, 30, seed=5):
        model.learn_one(xi, yi)
    state = model.export_state()
    name, array = next(iter(state.arrays.items()))
    mangled = {**state.arrays, name: np.zeros(array.size + 1)}
    bad = type(state)(**{**state.__dict__, "arrays": mangled})
    with pytest.raises(StateError):
        decode_model(encode_state(bad))
    # the record itself survives the codec untouched
    assert decode_state(encode_state(state)) == state


def test_bank_matches_one_model_at_a_time(model):
    """The batch path (fast or the LoopBank fallback) gives exactly the sequential results."""
    n_keys = 5
    events = [(i % n_keys, x, y) for i, (x, y) in enumerate(stream(model, 80, seed=6))]
    # each key first sees every feature, so its columns are in the bank's order
    full = {"f0": 1.0, "f1": -0.5, "f2": 0.25}
    first = 1.0 if is_regressor(model) else "cat"
    events = [(k, full, first) for k in range(n_keys)] + events
    singles = [model.clone() for _ in range(n_keys)]
    bank = bank_for(model)
    rows = [bank.add() for _ in range(n_keys)]
    names = ["f0", "f1", "f2"]
    cols = bank.columns(names)
    for start in range(0, len(events), n_keys):  # stages of one event per key
        stage = events[start : start + n_keys]
        X = np.zeros((len(stage), len(bank.features)))
        for i, (_, x, _) in enumerate(stage):
            for name, value in x.items():
                X[i, cols[names.index(name)]] = value
        xs = [x for _, x, _ in stage]
        stage_rows = np.array([rows[k] for k, _, _ in stage])
        got = bank.predict(stage_rows, X, xs)
        expected = [singles[k].predict_one(x) for k, x, _ in stage]
        assert got.labels == expected
        # a row may be named many times in one prediction call
        twice = bank.predict(np.concatenate([stage_rows, stage_rows]), np.vstack([X, X]), xs + xs)
        assert twice.labels == expected + expected
        errors = bank.learn(stage_rows, X, [y for _, _, y in stage], xs)
        assert errors == [None] * len(stage)
        for k, x, y in stage:
            singles[k].learn_one(x, y)
    for k in range(n_keys):
        assert bank.get(rows[k]).export_state() == singles[k].export_state()


def test_bank_export_is_the_state_of_get(model):
    bank = bank_for(model)
    row = bank.add()
    x = {"f0": 1.0, "f1": 2.0}
    cols = bank.columns(["f0", "f1"])
    X = np.zeros((1, len(bank.features)))
    X[0, cols] = [1.0, 2.0]
    y = 1.0 if is_regressor(model) else "cat"
    assert bank.learn(np.array([row]), X, [y], [x]) == [None]
    assert bank.export(row) == bank.get(row).export_state()
