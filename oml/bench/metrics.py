"""Per-pass figures from recorded predictions.

Computed here from the predictions rather than with River's running metrics so that the
definitions are pinned down in one place:

- ``accuracy``: share of events whose predicted label equals the true one (a ``None``
  prediction, from a model that has learned nothing yet, is wrong);
- ``precision``, ``recall``, ``f1``: binary data sets score the positive class, the greater of
  the two labels (``1`` for Banknote); with more classes they are macro averages over the data
  set's classes (F1 is the mean of the per-class F1, as in scikit-learn and River); a class that
  is never predicted has precision 0;
- ``log_loss``: mean of ``-log p`` with ``p`` the probability the model gave the true label
  (0 if it did not name it), clipped to [1e-15, 1 - 1e-15] as River does.  River's own
  ``CrossEntropy`` counts an unnamed true label as loss 0; here it costs the clip value;
- ``mae``, ``rmse`` for regression.

>>> m = classification_metrics([0, 1, 1, 0], [0, 1, 0, None], classes=[0, 1])
>>> m["accuracy"], m["precision"], m["recall"]
(0.5, 1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oml.learner import Label, label_sort_key

PROBA_CLIP = 1e-15


def positive_class(classes: Sequence[Label]) -> Label:
    """The class binary precision and recall are about: the greater label."""
    return max(classes, key=label_sort_key)


def _prf(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def log_loss(y_true: Sequence[Any], proba: Sequence[Mapping[Any, float] | None]) -> float:
    """Mean negative log of the probability given to the true label."""
    total = 0.0
    for y, p in zip(y_true, proba, strict=True):
        q = (p or {}).get(y, 0.0)
        q = min(max(q, PROBA_CLIP), 1.0 - PROBA_CLIP)
        total -= math.log(q)
    return total / len(y_true) if y_true else math.nan


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    classes: Sequence[Label],
    proba: Sequence[Mapping[Any, float] | None] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (binary on the positive class, else macro), log loss."""
    n = len(y_true)
    if n != len(y_pred):
        raise ValueError(f"{n} true labels and {len(y_pred)} predictions")
    correct = sum(1 for t, p in zip(y_true, y_pred, strict=True) if p is not None and p == t)
    out: dict[str, float] = {"accuracy": correct / n if n else math.nan}

    def counts(c: Label) -> tuple[int, int, int]:
        tp = fp = fn = 0
        for t, p in zip(y_true, y_pred, strict=True):
            hit_t, hit_p = t == c, p is not None and p == c
            tp += hit_t and hit_p
            fp += hit_p and not hit_t
            fn += hit_t and not hit_p
        return tp, fp, fn

    if len(classes) == 2:
        precision, recall, f1 = _prf(*counts(positive_class(classes)))
    else:
        per_class = np.array([_prf(*counts(c)) for c in classes]) if classes else np.zeros((1, 3))
        precision, recall, f1 = (float(v) for v in per_class.mean(axis=0))
    out.update(precision=precision, recall=recall, f1=f1)
    if proba is not None:
        out["log_loss"] = log_loss(y_true, proba)
    return out


def regression_metrics(y_true: Sequence[float], y_pred: Sequence[Any]) -> dict[str, float]:
    """MAE and RMSE; a ``None`` prediction counts as 0.

    >>> regression_metrics([1.0, 2.0], [2.0, 0.0])
    {'mae': 1.5, 'rmse': 1.5811388300841898}
    """
    t = np.asarray(y_true, dtype=float)
    p = np.array([0.0 if v is None else float(v) for v in y_pred])
    err = p - t
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def running_score(y_true: Sequence[Any], y_pred: Sequence[Any], task: str) -> np.ndarray:
    """Cumulative accuracy (classification) or MAE (regression) after each event."""
    if task == "regression":
        t = np.asarray(y_true, dtype=float)
        p = np.array([0.0 if v is None else float(v) for v in y_pred])
        err = np.abs(p - t)
    else:
        err = np.array(
            [p is not None and p == t for t, p in zip(y_true, y_pred, strict=True)], dtype=float
        )
    return np.cumsum(err) / np.arange(1, len(err) + 1)
