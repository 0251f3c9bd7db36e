"""Metric values on hand-computed examples, and agreement with scikit-learn's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from oml.bench.metrics import (
    classification_metrics,
    expected_calibration_error,
    log_loss,
    positive_class,
    recovery_time,
    regression_metrics,
    reliability,
    running_score,
    windowed_accuracy,
)


def test_binary_by_hand() -> None:
    y_true = [1, 0, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 1, 0, None]  # None: a model that has learned nothing yet
    proba = [{0: 0.1, 1: 0.9}, {0: 0.4, 1: 0.6}, {0: 0.8, 1: 0.2}, {1: 0.8}, {0: 0.6}, {}]
    m = classification_metrics(y_true, y_pred, classes=[0, 1], proba=proba)
    # correct: events 0, 3, 4.  Positive class 1: tp = 2 (0, 3), fp = 1 (1), fn = 1 (2)
    assert m["accuracy"] == 0.5
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    # p(true): .9, .4, .2, .8, .6 and nothing (clipped to 1e-15)
    expected = -(math.log(0.9) + math.log(0.4) + math.log(0.2) + math.log(0.8) + math.log(0.6)
                 + math.log(1e-15)) / 6  # fmt: skip
    assert m["log_loss"] == pytest.approx(expected)


def test_multiclass_macro_by_hand() -> None:
    y_true = list("aabbcc")
    y_pred = list("abbbac")
    m = classification_metrics(y_true, y_pred, classes=["a", "b", "c"])
    # a: tp 1 fp 1 fn 1 -> .5 .5 .5;  b: tp 2 fp 1 fn 0 -> 2/3 1 .8;  c: tp 1 fp 0 fn 1 -> 1 .5 2/3
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert "log_loss" not in m


def test_positive_class_is_the_greater_label() -> None:
    assert positive_class([1, 0]) == 1
    assert positive_class(["yes", "no"]) == "yes"
    assert positive_class([True, False]) is True


@pytest.mark.parametrize("k", [2, 3, 5])
def test_agrees_with_sklearn(k: int) -> None:
    rng = np.random.default_rng(k)
    y_true = rng.integers(0, k, 300).tolist()
    y_pred = rng.integers(0, k, 300).tolist()
    raw = rng.random((300, k))
    p = raw / raw.sum(axis=1, keepdims=True)
    proba = [dict(enumerate(row)) for row in p.tolist()]
    m = classification_metrics(y_true, y_pred, classes=list(range(k)), proba=proba)
    average = "binary" if k == 2 else "macro"
    pr, rc, f1, _ = skm.precision_recall_fscore_support(
        y_true, y_pred, average=average, pos_label=1, labels=list(range(k)), zero_division=0
    )
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((pr, rc, f1))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y_true, p, labels=list(range(k))))


def test_a_class_never_predicted_has_precision_zero() -> None:
    m = classification_metrics(["a", "b"], ["a", "a"], classes=["a", "b"])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0


def test_regression_by_hand() -> None:
    m = regression_metrics([1.0, 2.0, 4.0], [2.0, 2.0, 1.0])
    assert m["mae"] == pytest.approx(4 / 3)
    assert m["rmse"] == pytest.approx(math.sqrt(10 / 3))


def test_running_scores() -> None:
    acc = running_score(["a", "b", "b", "a"], ["a", "a", "b", None], "classification")
    assert acc.tolist() == [1.0, 0.5, 2 / 3, 0.5]
    mae = running_score([1.0, 3.0], [0.0, 0.0], "regression")
    assert mae.tolist() == [1.0, 2.0]


def test_log_loss_clips() -> None:
    assert log_loss([1], [{1: 1.0}]) == pytest.approx(-math.log(1 - 1e-15))
    assert log_loss(["a"], [None]) == pytest.approx(-math.log(1e-15))


# --------------------------------------------------------------------------------------------
# calibration: log loss of known predictors, expected calibration error, reliability bins


def test_log_loss_of_a_coin_and_of_the_class_prior() -> None:
    from oml.bench.contenders import ClassPrior

    assert log_loss([0, 1, 1], [{0: 0.5, 1: 0.5}] * 3) == pytest.approx(math.log(2))
    prior, proba = ClassPrior([0, 1]), []
    for y in [1, 1, 0, 1]:  # prequential: predict, then learn
        proba.append(prior.predict_proba_one({}))
        prior.learn_one({}, y)
    # p(true) = 1/2, then (1+1)/(1+2), then (0+1)/(2+2), then (2+1)/(3+2)
    expected = -(math.log(1 / 2) + math.log(2 / 3) + math.log(1 / 4) + math.log(3 / 5)) / 4
    assert log_loss([1, 1, 0, 1], proba) == pytest.approx(expected)
    assert prior.predict_one({}) == 1


def test_ece_by_hand() -> None:
    y_true = [1, 1, 0, 0, 1, "x"]
    proba = [
        {0: 0.05, 1: 0.95},  # bin [0.9, 1.0], right
        {0: 0.1, 1: 0.9},  # bin [0.9, 1.0] (0.9 is its lower edge), right
        {0: 0.2, 1: 0.8},  # bin [0.8, 0.9), wrong: the top label is 1
        {0: 0.65, 1: 0.35},  # bin [0.6, 0.7), right
        {0: 0.5, 1: 0.5},  # a tie goes to the lowest label, 0: bin [0.5, 0.6), wrong
        {},  # no probabilities: confidence 0, bin [0, 0.1), wrong
    ]
    # |hits - sum of confidences| per bin: |2 - 1.85| + |0 - 0.8| + |1 - 0.65| + |0 - 0.5| + 0
    expected = (0.15 + 0.8 + 0.35 + 0.5) / 6
    assert expected_calibration_error(y_true, proba) == pytest.approx(expected)
    rel = reliability(y_true, proba)
    assert rel["lower"] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    assert rel["count"] == [1, 0, 0, 0, 0, 1, 1, 0, 1, 2]
    assert rel["confidence"][9] == pytest.approx(0.925) and rel["accuracy"][9] == 1.0
    assert rel["accuracy"][8] == 0.0 and rel["confidence"][1] is None


def test_ece_is_zero_when_calibrated_and_large_when_overconfident() -> None:
    # 10 events at confidence 0.8 of which 8 are right: calibrated
    y = [1] * 8 + [0] * 2
    assert expected_calibration_error(y, [{1: 0.8, 0: 0.2}] * 10) == pytest.approx(0.0)
    # certain and right half the time
    assert expected_calibration_error([1, 0] * 5, [{1: 1.0, 0: 0.0}] * 10) == pytest.approx(0.5)
    m = classification_metrics(y, [1] * 10, classes=[0, 1], proba=[{1: 1.0}] * 10)
    assert m["ece"] == pytest.approx(0.2)


@pytest.mark.parametrize("seed", [0, 1])
def test_ece_agrees_with_a_direct_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p1 = rng.random(500)
    y = (rng.random(500) < p1 ** 2).astype(int).tolist()  # miscalibrated on purpose
    proba = [{0: 1 - q, 1: q} for q in p1.tolist()]
    conf = np.maximum(p1, 1 - p1)
    top = (p1 > 1 - p1).astype(int)
    hit = (top == np.array(y)).astype(float)
    b = np.minimum((conf * 10).astype(int), 9)
    direct = sum(abs(hit[b == k].sum() - conf[b == k].sum()) for k in range(10)) / 500
    assert expected_calibration_error(y, proba) == pytest.approx(direct)


# --------------------------------------------------------------------------------------------
# windowed accuracy and recovery time


def test_windowed_accuracy_is_the_trailing_mean() -> None:
    hits = np.random.default_rng(3).integers(0, 2, 200).astype(float)
    acc = windowed_accuracy(hits, window=25)
    naive = [hits[max(0, t - 24) : t + 1].mean() for t in range(200)]
    assert acc == pytest.approx(naive)


def test_recovery_time_on_constructed_series() -> None:
    before = [1.0, 1.0, 1.0, 0.0] * 250  # 1000 events at 0.75
    # after the drift: 300 events all wrong, then back at 0.75
    hits = before + [0.0] * 300 + [1.0, 1.0, 1.0, 0.0] * 500
    k = recovery_time(hits, 1000, window=100, tolerance=0.02)
    # the window 1297..1396 holds the last 3 misses and 97 events of the 0.75 pattern (73 hits):
    # 0.73, within 2 points; the one ending a step earlier has 72 hits
    assert k == 397
    assert recovery_time(hits, 1000, window=100, tolerance=0.02, end=1396) is None  # cut short
    assert recovery_time(hits, 1000, window=100, tolerance=0.05) < 397
    # no loss at all: the first window after the drift is back, so the time is the window
    assert recovery_time(before * 2, 1000, window=100) == 100
    # never back
    assert recovery_time(before + [0.0] * 1000, 1000, window=100) is None
    # the tolerance: 0.73 is within 2 points of 0.75
    assert recovery_time(before + ([1.0] * 73 + [0.0] * 27) * 5, 1000, window=100) == 100
    assert recovery_time(before + ([1.0] * 72 + [0.0] * 28) * 5, 1000, window=100) is None
    # the level is the window just before the drift (1.0), not the whole past (0.1): back once
    # a window holds at most 2 of the 50 misses, the window 1048..1147
    hits = [0.0] * 900 + [1.0] * 100 + [0.0] * 50 + [1.0] * 500
    assert recovery_time(hits, 1000, window=100) == 148
