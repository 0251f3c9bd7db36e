"""Metric values on hand-computed examples, and agreement with scikit-learn's definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from oml.bench.metrics import (
    classification_metrics,
    log_loss,
    positive_class,
    regression_metrics,
    running_score,
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
