"""Golden values (weights after set updates, fixed to six digits), agreement with River and
scikit-learn, and the reference accuracies docs/algorithms-guide.md reports."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from algo_helpers import load_csv, prequential, stream
from oml_algorithms.pa import PAClassifier, PARegressor
from oml_algorithms.scw import SCWClassifier
from river import linear_model

X12 = {"x1": 1.0, "x2": 2.0}


def arrays(model) -> dict[str, np.ndarray]:
    return model.export_state().arrays


def bias_last(v: np.ndarray) -> np.ndarray:
    """Our bias feature is column 0; the golden values below list it last."""
    return np.concatenate([v[1:], v[:1]])


# ---- golden values ---------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "w"), [(0, [0.2, 0.4]), (1, [0.1, 0.2]), (2, [0.1, 0.2])])
def test_pa_golden(mode, w):
    model = PAClassifier(C=0.1, mode=mode, bias="none", classes=[-1, 1])
    model.learn_one(X12, 1)
    np.testing.assert_allclose(arrays(model)["w"][0], w, rtol=1e-12)


def test_scw1_golden():
    model = SCWClassifier(mode=1, eta=0.75, C=1.0, a=1.0, bias="none", classes=[-1, 1])
    model.learn_one(X12, 1)
    state = arrays(model)
    np.testing.assert_allclose(state["mu"][0], [0.250074, 0.500148], atol=1e-6)
    np.testing.assert_allclose(
        state["sigma"][0], [[0.937463, -0.125074], [-0.125074, 0.749852]], atol=1e-6
    )


def test_scw2_golden():
    model = SCWClassifier(mode=2, bias="none", classes=[-1, 1])  # eta None = 0.90
    model.learn_one(X12, 1)
    np.testing.assert_allclose(arrays(model)["mu"][0], [0.329983, 0.659966], atol=1e-6)


def test_multiclass_pa_golden():
    model = PAClassifier(C=0.1, mode=1, bias="none", classes=[0, 1, 2])
    model.learn_one(X12, 2)  # all scores tie at 0: the rival is class 0
    w = arrays(model)["w"]
    np.testing.assert_allclose(w, [[-0.1, -0.2], [0.0, 0.0], [0.1, 0.2]], rtol=1e-12)


def test_permutation():
    perm = np.random.default_rng(0).permutation(1372)[:8]
    assert perm.tolist() == [118, 893, 582, 237, 198, 1123, 454, 1054]


def test_banknote_one_pass_golden():
    xs, ys = stream("banknote")
    pa = PAClassifier(C=1.0, mode=1, bias="feature", classes=[0, 1])
    scw = SCWClassifier(mode=1, covariance="full", classes=[0, 1])
    for x, y in zip(xs, ys, strict=True):
        pa.learn_one(x, y)
        scw.learn_one(x, y)
    np.testing.assert_allclose(
        bias_last(arrays(pa)["w"][0]),
        [-1.644289, -0.838343, -1.213309, 0.106675, 1.458799],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        bias_last(arrays(scw)["mu"][0]),
        [-1.620873, -0.788633, -1.035509, -0.060636, 1.633370],
        atol=1e-6,
    )


def test_classes_as_they_come_match_classes_up_front():
    """Learning before the second class is known, then flipping, lands on the same model."""
    xs, ys = stream("banknote")
    ys = [1 - y for y in ys]  # the first label is 1: learnt as negative, flipped when 0 comes
    assert ys[0] == 1
    for make in (PAClassifier, SCWClassifier):
        late, early = make(), make(classes=[0, 1])
        for x, y in zip(xs, ys, strict=True):
            late.learn_one(x, y)
            early.learn_one(x, y)
        a, b = late.export_state(), early.export_state()
        assert (a.labels, a.n_updates, a.arrays.keys()) == (b.labels, b.n_updates, b.arrays.keys())
        for name in a.arrays:
            assert a.arrays[name].tobytes() == b.arrays[name].tobytes()


# ---- River and scikit-learn ------------------------------------------------------------------


def sklearn_pa(**kwargs):
    from sklearn.linear_model import PassiveAggressiveClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return PassiveAggressiveClassifier(**kwargs)


@pytest.mark.parametrize("mode", [0, 1, 2])
def test_pa_matches_river_on_banknote(mode):
    """Same prediction on every event of 3 passes; the same weights to rounding (River and
    scikit-learn differ from each other in the last bits too: River squares a numpy norm)."""
    xs, ys = stream("banknote")
    ours = PAClassifier(C=1.0, mode=mode)
    river = linear_model.PAClassifier(C=1.0, mode=mode)
    for _ in range(3):
        for x, y in zip(xs, ys, strict=True):
            if ours.n_updates or ours._labels:
                assert ours.predict_one(x) == river.predict_one(x)
            ours.learn_one(x, y)
            river.learn_one(x, bool(y))
    state = ours.export_state()
    w_river = [river.weights[f] for f in state.features]
    np.testing.assert_allclose(state.arrays["w"][0], w_river, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state.arrays["b"][0], river.intercept, rtol=1e-12)
    if mode == 1:  # the PA-I weights docs/algorithms-guide.md reports
        np.testing.assert_allclose(
            state.arrays["w"][0], [-2.38963, -1.27438, -1.74687, 0.09747], atol=5e-6
        )
        np.testing.assert_allclose(state.arrays["b"][0], 2.17953, atol=5e-6)


@pytest.mark.parametrize(("mode", "loss"), [(1, "hinge"), (2, "squared_hinge")])
def test_pa_matches_sklearn_on_banknote(mode, loss):
    from sklearn.linear_model import SGDClassifier

    names, X, y = load_csv("banknote")
    perm = np.random.default_rng(0).permutation(len(y))
    X, y = X[perm], np.array(y)[perm]
    ours = PAClassifier(C=1.0, mode=mode, classes=[0, 1])
    sk = sklearn_pa(C=1.0, loss=loss)
    sgd = SGDClassifier(loss="hinge", penalty=None, learning_rate=f"pa{mode}", eta0=1.0)
    for _ in range(3):
        for i in range(len(y)):
            x = dict(zip(names, X[i].tolist(), strict=True))
            if i or _:
                assert ours.predict_one(x) == sk.predict(X[i : i + 1])[0]
            ours.learn_one(x, int(y[i]))
            sk.partial_fit(X[i : i + 1], y[i : i + 1], classes=[0, 1])
            sgd.partial_fit(X[i : i + 1], y[i : i + 1], classes=[0, 1])
    state = ours.export_state()
    np.testing.assert_allclose(state.arrays["w"][0], sk.coef_[0], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(state.arrays["b"], sk.intercept_, rtol=1e-12)
    np.testing.assert_array_equal(sgd.coef_, sk.coef_)  # the replacement sklearn suggests


@pytest.mark.parametrize(
    ("mode", "loss"), [(1, "epsilon_insensitive"), (2, "squared_epsilon_insensitive")]
)
def test_pa_regressor_matches_sklearn(mode, loss):
    from sklearn.datasets import make_regression
    from sklearn.linear_model import PassiveAggressiveRegressor

    X, y = make_regression(500, 4, noise=5, random_state=0)
    ours = PARegressor(C=1.0, mode=mode, eps=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk = PassiveAggressiveRegressor(C=1.0, epsilon=0.1, loss=loss)
    errors = []
    for i in range(len(y)):
        x = {f"x{j}": v for j, v in enumerate(X[i].tolist())}
        p = ours.predict_one(x)
        if i:
            assert p == pytest.approx(sk.predict(X[i : i + 1])[0], rel=1e-10, abs=1e-10)
        errors.append(abs(p - y[i]))
        ours.learn_one(x, float(y[i]))
        sk.partial_fit(X[i : i + 1], y[i : i + 1])
    state = ours.export_state()
    np.testing.assert_allclose(state.arrays["w"][0], sk.coef_, rtol=1e-10)
    np.testing.assert_allclose(state.arrays["b"], sk.intercept_, rtol=1e-10)
    if mode == 1:
        assert np.mean(errors) == pytest.approx(10.50, abs=0.01)  # PA-I's mean absolute error here


# ---- reference accuracies (3 passes, permutation order, classes as they come) ----------------


def test_scw_banknote_accuracy():
    xs, ys = stream("banknote")
    for model in (SCWClassifier(), SCWClassifier(mode=2)):
        acc = prequential(model, xs, ys)
        assert acc[1] >= 0.985 and acc[2] >= 0.985, acc


def test_scw_banknote_reference_numbers():
    """With the classes known up front, the reference accuracies come out to the digit."""
    xs, ys = stream("banknote")
    scw1 = SCWClassifier(classes=[0, 1])
    acc = prequential(scw1, xs, ys)
    assert [round(100 * a, 2) for a in acc] == [98.47, 98.83, 99.05]
    assert scw1.n_updates == 129
    scw2 = SCWClassifier(mode=2, classes=[0, 1])
    assert [round(100 * a, 2) for a in prequential(scw2, xs, ys)] == [98.47, 98.91, 98.98]
    assert scw2.n_updates == 117
    diag = SCWClassifier(covariance="diagonal", classes=[0, 1])
    assert [round(100 * a, 2) for a in prequential(diag, xs, ys)] == [98.10, 98.91, 99.05]
    assert diag.n_updates == 153


def test_scw_iris_accuracy():
    xs, ys = stream("iris")
    for model in (SCWClassifier(), SCWClassifier(mode=2)):
        acc = prequential(model, xs, ys)
        assert acc[2] >= 0.96, acc


def test_iris_reference_numbers():
    xs, ys = stream("iris")
    classes = sorted(set(ys))
    acc = prequential(SCWClassifier(classes=classes), xs, ys)
    assert [round(100 * a, 2) for a in acc] == [81.33, 96.00, 97.33]
    acc = prequential(SCWClassifier(mode=2, classes=classes), xs, ys)
    assert [round(100 * a, 2) for a in acc] == [87.33, 97.33, 98.00]
    acc = prequential(PAClassifier(bias="feature", classes=classes), xs, ys)
    assert [round(100 * a, 2) for a in acc] == [63.33, 66.67, 68.00]


def test_pa_banknote_reference_numbers():
    xs, ys = stream("banknote")
    acc = prequential(PAClassifier(classes=[0, 1]), xs, ys)
    assert [round(100 * a, 2) for a in acc] == [96.06, 97.81, 98.25]
    acc = prequential(PAClassifier(bias="feature", classes=[0, 1]), xs, ys)
    assert [round(100 * a, 2) for a in acc] == [96.50, 97.81, 97.89]
