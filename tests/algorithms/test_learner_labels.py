"""Label rules: which class is positive, classes that appear late, promotion, bad labels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from oml_algorithms.pa import PAClassifier
from oml_algorithms.scw import SCWClassifier

from oml.learner import InvalidInput

CLASSIFIERS = [
    PAClassifier,
    lambda **kw: PAClassifier(mode=2, bias="feature", **kw),
    SCWClassifier,
    lambda **kw: SCWClassifier(mode=2, covariance="diagonal", **kw),
]
X_POS = {"a": 1.0, "b": 0.5}
X_NEG = {"a": -1.0, "b": -0.5}


def train(model, pos, neg, n=20):
    for _ in range(n):
        model.learn_one(X_POS, pos)
        model.learn_one(X_NEG, neg)
    return model


@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize(
    ("neg", "pos"), [(False, True), (0, 1), ("a", "b"), (-1, 1), (1.5, 2), ("no", "yes")]
)
def test_binary_labels(make, neg, pos):
    """The greater label is the positive class, whichever comes first."""
    for first_pos in (True, False):
        model = make()
        for _ in range(20):
            pairs = [(X_POS, pos), (X_NEG, neg)]
            for x, y in pairs if first_pos else pairs[::-1]:
                model.learn_one(x, y)
        assert model.predict_one(X_POS) == pos
        assert model.predict_one(X_NEG) == neg
        proba = model.predict_proba_one(X_POS)
        assert list(proba) == [neg, pos]
        assert proba[pos] > 0.5 and math.isclose(sum(proba.values()), 1.0)
        state = model.export_state()
        assert state.labels == [neg, pos]
        assert state.arrays[next(iter(state.arrays))].shape[0] == 1  # one binary row


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_fresh_and_single_class_models(make):
    model = make()
    assert model.predict_one(X_POS) is None
    assert model.predict_proba_one(X_POS) == {}
    model.learn_one(X_POS, "only")
    assert model.predict_one(X_NEG) == "only"
    assert model.predict_proba_one(X_NEG) == {"only": 1.0}


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_classes_up_front(make):
    binary = make(classes=["b", "a"])
    assert binary.predict_one(X_POS) == "a"  # score 0: the negative class
    assert binary.export_state().labels == ["a", "b"]
    multi = make(classes=["c", "a", "b"])
    assert multi.predict_one(X_POS) == "a"  # all tie: the lowest class
    assert set(multi.predict_proba_one(X_POS)) == {"a", "b", "c"}
    multi.learn_one(X_POS, "d")  # an unseen label is just a new class
    assert multi.export_state().labels == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="twice"):
        make(classes=["a", "a"])
    with pytest.raises(ValueError):
        make(classes=[None])


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_new_class_in_the_middle(make):
    model = train(make(), "c", "a")
    model.learn_one({"a": 0.0, "b": 3.0}, "b")
    assert model.export_state().labels == ["a", "b", "c"]
    for _ in range(30):
        model.learn_one(X_POS, "c")
        model.learn_one(X_NEG, "a")
        model.learn_one({"a": 0.0, "b": 3.0}, "b")
    assert model.predict_one(X_POS) == "c"
    assert model.predict_one(X_NEG) == "a"
    assert model.predict_one({"a": 0.0, "b": 3.0}) == "b"
    model.learn_one(X_POS, "0")  # before every other class
    assert model.export_state().labels == ["0", "a", "b", "c"]
    assert model.predict_one(X_NEG) == "a"


def test_pa_promotion_keeps_the_binary_margin():
    model = train(PAClassifier(bias="none"), True, False)
    w = model.export_state().arrays["w"][0].copy()
    model.learn_one({"a": 0.0, "b": 0.0}, "z")  # ‖x‖² = 0: promoted, not updated
    state = model.export_state()
    assert state.labels == [False, True, "z"]
    W = state.arrays["w"]
    assert W[1].tobytes() == (w / 2).tobytes() and W[0].tobytes() == (0.0 - w / 2).tobytes()
    assert not W[2].any()
    for x in ({"a": 0.3, "b": -2.0}, {"a": -5.0, "b": 1.0}):
        xv = np.array([x["a"], x["b"]])
        f = float(w @ xv)
        scores = model._forward(xv)
        assert scores[1] - scores[0] == f  # exactly


def test_scw_promotion_keeps_margin_and_variance():
    model = train(SCWClassifier(bias="none"), 1, 0)
    mu = model._mu.copy()
    sigma = model._sigma.copy()
    model._add_label(2)
    xv = np.array([0.7, -1.3])
    m = float(mu @ xv)
    v = float(xv @ np.vecdot(sigma, xv))
    scores = model._forward(xv)
    assert scores[1] - scores[0] == m
    sx = np.vecdot(model._sigmas, xv)
    assert float(xv @ sx[0]) + float(xv @ sx[1]) == v
    assert model._sigmas[2].tolist() == np.eye(2).tolist()


@pytest.mark.parametrize("make", CLASSIFIERS)
@pytest.mark.parametrize("bad", [None, math.nan, math.inf, [1], {"a": 1}, (1, 2), b"x", 1j])
def test_bad_label_leaves_the_model_unchanged(make, bad):
    model = train(make(), 1, 0, n=3)
    before = model.export_state()
    with pytest.raises(InvalidInput) as info:
        model.learn_one({"a": 1.0, "new": 2.0}, bad)
    assert info.value.reason == "bad_label"
    assert model.export_state() == before


@pytest.mark.parametrize("make", CLASSIFIERS)
def test_numpy_and_equal_labels(make):
    model = make()
    model.learn_one(X_POS, np.int64(1))
    model.learn_one(X_NEG, 0)
    model.learn_one(X_POS, 1.0)  # the same class as 1
    assert model.export_state().labels == [0, 1]
    assert type(model.predict_one(X_POS)) is int
    model.learn_one(X_NEG, np.bool_(True))  # a bool is not the int 1
    assert model.export_state().labels == [True, 0, 1]


def test_river_tags():
    assert PAClassifier()._multiclass and SCWClassifier()._multiclass
