"""State export/import: a bit-identical round trip, and clear errors for records that do not fit."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from oml_algorithms.pa import PAClassifier, PARegressor
from oml_algorithms.scw import SCWClassifier

from oml.learner import ModelState, StateError
from oml.plugins import load_registry

MODELS = {
    "pa": lambda: PAClassifier(),
    "pa-feature-multi": lambda: PAClassifier(mode=2, bias="feature", classes=["a", "b", "c"]),
    "pa-none": lambda: PAClassifier(mode=0, bias="none"),
    "scw-full": lambda: SCWClassifier(covariance="full"),
    "scw-diag-2": lambda: SCWClassifier(mode=2, covariance="diagonal", eta=0.8, a=0.5),
    "scw-auto-none": lambda: SCWClassifier(bias="none", classes=[1, 2, 3]),
    "regressor": lambda: PARegressor(eps=0.0, bias="feature"),
}


def events(n: int, seed: int, regression: bool):
    rng = np.random.default_rng(seed)
    for i in range(n):
        x = {f"f{j}": float(v) for j, v in enumerate(rng.normal(size=2 + i % 3))}
        y = float(rng.normal()) if regression else "abc"[int(rng.integers(0, min(3, 2 + i // 20)))]
        yield x, y


@pytest.mark.parametrize("make", MODELS.values(), ids=list(MODELS))
def test_round_trip_is_bit_identical(make):
    model = make()
    reg = isinstance(model, PARegressor)
    for x, y in events(60, 0, reg):
        model.learn_one(x, y)
    state = model.export_state()
    assert state.algorithm == type(model).algorithm and state.version == 1
    assert all(a.dtype == np.float64 for a in state.arrays.values())
    copy = type(model).import_state(state)
    assert copy.export_state() == state
    assert copy.n_updates == model.n_updates > 0
    for x, y in events(60, 1, reg):
        assert copy.predict_one(x) == model.predict_one(x)
        if not reg:
            assert copy.predict_proba_one(x) == model.predict_proba_one(x)
        copy.learn_one(x, y)
        model.learn_one(x, y)
    assert copy.export_state() == model.export_state()


@pytest.mark.parametrize("make", MODELS.values(), ids=list(MODELS))
def test_fresh_round_trip(make):
    model = make()
    assert type(model).import_state(model.export_state()).export_state() == model.export_state()


def test_state_is_plain_data():
    model = SCWClassifier(classes=("x", "y"))
    model.learn_one({"a": 1.0}, "x")
    state = model.export_state()
    assert state.params == {
        "mode": 1,
        "C": 1.0,
        "eta": None,
        "a": 1.0,
        "covariance": "auto",
        "bias": "feature",
        "classes": ["x", "y"],
    }
    assert state.features == ["a"] and state.labels == ["x", "y"]
    assert state.arrays["mu"].shape == (1, 2) and state.arrays["sigma"].shape == (1, 2, 2)
    state.arrays["mu"][0, 0] = 99.0  # the export is a copy
    assert model.export_state().arrays["mu"][0, 0] != 99.0


def broken(state: ModelState, **changes) -> ModelState:
    return dataclasses.replace(state, **changes)


def with_array(state: ModelState, name: str, value) -> ModelState:
    return broken(state, arrays={**state.arrays, name: value})


def trained_scw() -> ModelState:
    model = SCWClassifier()
    for x, y in events(30, 2, False):
        model.learn_one(x, y)
    return model.export_state()


BAD_STATES = {
    "not a state": (lambda s: {"algorithm": "scw"}, "ModelState"),
    "algorithm": (lambda s: broken(s, algorithm="pa"), "algorithm"),
    "version": (lambda s: broken(s, version=2), "version"),
    "unknown param": (lambda s: broken(s, params={**s.params, "gamma": 1}), "params"),
    "missing param": (lambda s: broken(s, params={"mode": 1}), "params"),
    "bad param": (lambda s: broken(s, params={**s.params, "mode": 7}), "mode"),
    "features": (lambda s: broken(s, features=["f0", "f0", "f1", "f2"]), "unique"),
    "unhashable": (lambda s: broken(s, features=[["f0"], "f1", "f2", "f3"]), "hashable"),
    "label": (lambda s: broken(s, labels=[None, "b", "c"]), "label"),
    "unsorted": (lambda s: broken(s, labels=["b", "a", "c"]), "order"),
    "array name": (lambda s: broken(s, arrays={"mu": s.arrays["mu"]}), "arrays"),
    "shape": (lambda s: with_array(s, "mu", s.arrays["mu"][:, :-1].copy()), "shape"),
    "dtype": (lambda s: with_array(s, "mu", s.arrays["mu"].astype(np.float32)), "float64"),
    "nan": (lambda s: with_array(s, "mu", s.arrays["mu"] * np.nan), "NaN"),
    "asymmetric": (
        lambda s: with_array(s, "sigma", s.arrays["sigma"] + np.triu(np.ones(5))),
        "symm",
    ),
    "variance": (lambda s: with_array(s, "sigma", -s.arrays["sigma"]), "positive"),
    "diagonal for full": (lambda s: with_array(s, "sigma", np.ones(s.arrays["mu"].shape)), "shape"),
    "n_updates": (lambda s: broken(s, n_updates=-1), "n_updates"),
    "extra": (lambda s: broken(s, extra={"x": 1}), "extra"),
}


@pytest.mark.parametrize("name", list(BAD_STATES))
def test_bad_states_are_refused(name):
    state = trained_scw()
    assert state.labels == ["a", "b", "c"] and len(state.features) == 4
    change, message = BAD_STATES[name]
    with pytest.raises(StateError, match=message):
        SCWClassifier.import_state(change(state))


def test_classes_param_must_be_in_labels():
    state = PAClassifier(classes=[0, 1]).export_state()
    with pytest.raises(StateError, match="classes"):
        PAClassifier.import_state(broken(state, labels=[0, 2]))
    with pytest.raises(StateError, match="labels"):
        PARegressor.import_state(broken(PARegressor().export_state(), labels=[1]))


def test_registry_finds_the_learners():
    registry = load_registry()
    assert registry.get("pa") is PAClassifier
    assert registry.get("pa-regressor") is PARegressor
    assert registry.get("scw") is SCWClassifier
    assert registry.create("scw", {"mode": 2}).mode == 2
