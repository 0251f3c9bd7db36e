"""Features: bad ones are refused without a trace, new and missing ones work as in River."""

from __future__ import annotations

import math
from collections import OrderedDict
from fractions import Fraction

import numpy as np
import pytest
from oml_algorithms.pa import PAClassifier, PARegressor
from oml_algorithms.scw import SCWClassifier

from oml.bank import bank_for
from oml.learner import InvalidInput

MODELS = [
    lambda: PAClassifier(),
    lambda: PAClassifier(mode=0, bias="feature"),
    lambda: SCWClassifier(),
    lambda: SCWClassifier(covariance="diagonal", bias="none"),
    lambda: PARegressor(),
]
BAD = [
    ({"a": math.nan, "b": 1.0}, "not_finite"),
    ({"a": 1.0, "b": math.inf}, "not_finite"),
    ({"a": -math.inf}, "not_finite"),
    ({"a": "1.5", "b": 1.0}, "wrong_type"),
    ({"a": True, "b": 1.0}, "wrong_type"),
    ({"a": None}, "wrong_type"),
    ({"a": [1.0]}, "wrong_type"),
    ({"a": 10**400}, "not_finite"),
    ({}, "empty_features"),
    ([("a", 1.0)], "wrong_type"),
    (None, "wrong_type"),
]


def target(model, i: int):
    return float(i % 3) if isinstance(model, PARegressor) else ["x", "y", "z"][i % 3]


def trained(make, n=12):
    model = make()
    rng = np.random.default_rng(0)
    for i in range(n):
        model.learn_one({"a": float(rng.normal()), "b": float(rng.normal())}, target(model, i))
    return model


@pytest.mark.parametrize("make", MODELS)
@pytest.mark.parametrize(("x", "reason"), BAD)
def test_bad_features_are_refused(make, x, reason):
    model = trained(make)
    before = model.export_state()
    for call in (model.predict_one, getattr(model, "predict_proba_one", model.predict_one)):
        with pytest.raises(InvalidInput) as info:
            call(x)
        assert info.value.reason == reason
    with pytest.raises(InvalidInput) as info:
        model.learn_one(x, target(model, 0))
    assert info.value.reason == reason
    assert model.export_state() == before


@pytest.mark.parametrize("make", MODELS)
def test_bad_features_after_a_good_predict(make):
    """predict_one caches the vector it read; a mutated dict is read afresh by learn_one."""
    model = trained(make)
    x = {"a": 1.0, "b": 2.0}
    model.predict_one(x)
    x["b"] = math.nan
    before = model.export_state()
    with pytest.raises(InvalidInput):
        model.learn_one(x, target(model, 1))
    assert model.export_state() == before
    x["b"] = 3.0
    reference = trained(make)
    model.learn_one(x, target(model, 1))
    reference.learn_one({"a": 1.0, "b": 3.0}, target(model, 1))
    assert model.export_state() == reference.export_state()


@pytest.mark.parametrize("make", MODELS)
def test_other_numbers_and_mappings(make):
    """numpy scalars, Fractions, ints and non-dict mappings read as the same floats."""
    a, b = trained(make), trained(make)
    a.learn_one({"a": 2, "b": 0.5}, target(a, 5))
    b.learn_one(OrderedDict(a=np.float32(2.0), b=Fraction(1, 2)), target(b, 5))
    assert a.export_state() == b.export_state()
    assert a.predict_one({"a": 1, "b": 2}) == b.predict_one({"a": np.int64(1), "b": 2.0})


@pytest.mark.parametrize("make", MODELS)
def test_new_and_missing_features(make):
    """A late feature is a new column that starts as if never seen; a missing one counts as 0.
    A model that had the column (at 0) from the start ends up exactly the same."""
    rng = np.random.default_rng(3)
    late, early = make(), make()
    for i in range(40):
        x = {"a": float(rng.normal()), "b": float(rng.normal())}
        if i >= 20:
            x["c"] = float(rng.normal())
        if i % 7 == 3:
            del x["a"]
        full = {"a": x.get("a", 0.0), "b": x["b"], "c": x.get("c", 0.0)}
        assert late.predict_one(x) == early.predict_one(full)
        late.learn_one(x, target(late, i))
        early.learn_one(full, target(early, i))
    assert late.export_state() == early.export_state()


@pytest.mark.parametrize("make", MODELS)
def test_predicting_never_changes_the_model(make):
    model = trained(make)
    before = model.export_state()
    for x in ({"a": 1.0}, {"zz": 2.0}, {"a": 1.0, "b": 2.0, "zz": 3.0}, {"b": -1.0, "a": 0.5}):
        model.predict_one(x)
        if hasattr(model, "predict_proba_one"):
            model.predict_proba_one(x)
    assert model.export_state() == before


def test_a_new_feature_counts_in_the_scw_variance():
    """An unseen feature has variance a: it widens the prediction interval, not the mean."""
    model = SCWClassifier(bias="none")
    for _ in range(5):
        model.learn_one({"a": 1.0}, 1)
        model.learn_one({"a": -1.0}, 0)
    p = model.predict_proba_one({"a": 1.0})[1]
    q = model.predict_proba_one({"a": 1.0, "new": 3.0})[1]
    assert 0.5 < q < p
    assert model.predict_one({"a": 1.0, "new": 3.0}) == 1


def test_feature_order_does_not_matter():
    a, b = SCWClassifier(), SCWClassifier()
    rng = np.random.default_rng(5)
    for i in range(30):
        x = {k: float(v) for k, v in zip("pqr", rng.normal(size=3), strict=True)}
        a.learn_one(x, i % 2)
        b.learn_one(dict(reversed(list(x.items()))), i % 2)
    for x in ({"p": 1.0, "q": 2.0, "r": 3.0}, {"r": -1.0, "p": 0.5}):
        assert a.predict_proba_one(x) == pytest.approx(b.predict_proba_one(x))


@pytest.mark.parametrize(
    "make", [lambda: PAClassifier(mode=0), lambda: PARegressor(mode=0, eps=0.0)]
)
def test_a_step_that_overflows_is_skipped(make):
    """PA's loss/‖x‖² overflows for a subnormal ‖x‖²: the step is skipped (by the bank too)."""
    model = make()
    y = 1.0 if isinstance(model, PARegressor) else "x"
    model.learn_one({"a": 6.566558267450912e-161}, y)
    state = model.export_state()
    assert all(np.isfinite(a).all() for a in state.arrays.values())
    assert model.n_updates == 0
    bank = bank_for(make())
    row = bank.add()
    bank.columns(["a"])
    assert bank.learn(np.array([row]), np.array([[6.566558267450912e-161]]), [y]) == [None]
    assert bank.get(row).export_state() == state


def test_auto_covariance_goes_diagonal_past_32_features():
    model = SCWClassifier()
    x = {f"f{i}": float(i % 5) - 2.0 for i in range(32)}
    model.learn_one(x, 1)
    model.learn_one({k: -v for k, v in x.items()}, 0)
    sigma = model.export_state().arrays["sigma"]
    assert sigma.shape == (1, 33, 33)  # 32 features and the bias: still full
    wider = SCWClassifier.import_state(model.export_state())
    wider._add_columns(["f32"])  # what learning from a 33rd feature does first
    diagonal = wider.export_state().arrays["sigma"]
    assert diagonal.tolist() == [[*np.diagonal(sigma[0]).tolist(), 1.0]]  # variances kept
    model.learn_one({**x, "f32": 1.0}, 1)
    assert model.export_state().arrays["sigma"].shape == (1, 34)
    assert SCWClassifier(covariance="full").full_for(1000)
    assert not SCWClassifier(covariance="diagonal").full_for(0)
