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
- ``ece``, the expected calibration error of the top label (Guo et al. 2017): each event's
  confidence is the largest probability the model gave (0 if it gave none) and its top label the
  class that got it (ties: the lowest label); events fall into ``ECE_BINS = 10`` equal-width
  confidence bins ``[0, 0.1), [0.1, 0.2), ..., [0.9, 1.0]``, and ECE is the mean over bins of
  ``|accuracy of the top label - mean confidence|`` weighted by the share of events in the bin
  (0 for a perfectly calibrated model, at most 1).  :func:`reliability` gives the bins
  themselves (the reliability plot);
- ``mae``, ``rmse`` for regression.

Over time, for the drift streams:

- windowed accuracy (:func:`windowed_accuracy`): the share of correct predictions among the
  last ``WINDOW = 500`` events (trailing, the event itself included);
- recovery time (:func:`recovery_time`) after a drift at event ``d``: the level before the drift
  is the accuracy over the ``WINDOW`` events just before ``d``; the recovery time is the least
  ``k`` such that the ``WINDOW`` events ``d + k - WINDOW .. d + k - 1``, all after the drift, have
  an accuracy of at least that level minus ``RECOVERY_TOLERANCE = 0.02`` (2 points).  So it is
  never less than ``WINDOW`` (500 means no loss the window can see), and ``None``, "not
  recovered", when no such window ends before the next drift or the end of the run.

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
ECE_BINS = 10
WINDOW = 500
RECOVERY_TOLERANCE = 0.02


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


def _top(p: Mapping[Any, float] | None) -> tuple[Any, float]:
    """The top label and its probability (``None, 0.0`` for no probabilities)."""
    if not p:
        return None, 0.0
    label = max(sorted(p, key=label_sort_key), key=lambda c: p[c])
    return label, float(p[label])


def _bins(
    y_true: Sequence[Any], proba: Sequence[Mapping[Any, float] | None], bins: int
) -> tuple[list[int], list[float], list[int]]:
    """Per confidence bin: events, sum of confidences, top-label hits."""
    count = [0] * bins
    conf = [0.0] * bins
    hits = [0] * bins
    for y, p in zip(y_true, proba, strict=True):
        label, c = _top(p)
        b = min(int(c * bins), bins - 1)
        count[b] += 1
        conf[b] += c
        hits[b] += label is not None and label == y
    return count, conf, hits


def reliability(
    y_true: Sequence[Any], proba: Sequence[Mapping[Any, float] | None], bins: int = ECE_BINS
) -> dict[str, list[Any]]:
    """Per equal-width confidence bin: event count, mean confidence, accuracy of the top label
    (``None`` for an empty bin); the bins' lower edges in ``lower``.

    >>> reliability([1, 0, 1], [{1: 0.95, 0: 0.05}, {1: 0.9, 0: 0.1}, {1: 0.55, 0: 0.45}], 2)
    {'lower': [0.0, 0.5], 'count': [0, 3], 'confidence': [None, 0.8], 'accuracy': [None, 0.6667]}
    """
    count, conf, hits = _bins(y_true, proba, bins)
    return {
        "lower": [round(b / bins, 6) for b in range(bins)],
        "count": count,
        "confidence": [round(conf[b] / count[b], 4) if count[b] else None for b in range(bins)],
        "accuracy": [round(hits[b] / count[b], 4) if count[b] else None for b in range(bins)],
    }


def expected_calibration_error(
    y_true: Sequence[Any], proba: Sequence[Mapping[Any, float] | None], bins: int = ECE_BINS
) -> float:
    """Top-label ECE over ``bins`` equal-width confidence bins (see the module docstring).

    >>> expected_calibration_error([1, 0], [{1: 0.9, 0: 0.1}, {1: 0.9, 0: 0.1}])
    0.4
    """
    n = len(y_true)
    if not n:
        return math.nan
    _, conf, hits = _bins(y_true, proba, bins)
    return round(sum(abs(hits[b] - conf[b]) for b in range(bins)) / n, 12)


def classification_metrics(
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    *,
    classes: Sequence[Label],
    proba: Sequence[Mapping[Any, float] | None] | None = None,
) -> dict[str, float]:
    """Accuracy, precision, recall, F1 (binary on the positive class, else macro); log loss and
    ECE if ``proba`` is given."""
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
        out["ece"] = expected_calibration_error(y_true, proba)
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
        err = correct(y_true, y_pred)
    return np.cumsum(err) / np.arange(1, len(err) + 1)


def correct(y_true: Sequence[Any], y_pred: Sequence[Any]) -> np.ndarray:
    """1.0 where the prediction is the true label, else 0.0 (``None`` is wrong)."""
    return np.array(
        [p is not None and p == t for t, p in zip(y_true, y_pred, strict=True)], dtype=float
    )


def windowed_accuracy(hits: Sequence[float] | np.ndarray, window: int = WINDOW) -> np.ndarray:
    """Accuracy over the trailing ``window`` events at each event (fewer at the start).

    >>> windowed_accuracy([1, 0, 1, 1], window=2).tolist()
    [1.0, 0.5, 0.5, 1.0]
    """
    h = np.asarray(hits, dtype=float)
    c = np.concatenate([[0.0], np.cumsum(h)])
    t = np.arange(1, len(h) + 1)
    lo = np.maximum(t - window, 0)
    return (c[t] - c[lo]) / (t - lo)


def recovery_time(
    hits: Sequence[float] | np.ndarray,
    drift: int,
    *,
    window: int = WINDOW,
    tolerance: float = RECOVERY_TOLERANCE,
    end: int | None = None,
) -> int | None:
    """Events after the drift at index ``drift`` until windowed accuracy is back within
    ``tolerance`` of its level over the ``window`` events before it; ``None`` if it is not back
    by ``end`` (default: the end of ``hits``).  See the module docstring.

    >>> hits = [1] * 1000 + [0] * 300 + [1] * 1000  # drift at 1000, 300 wrong, then right
    >>> recovery_time(hits, 1000, window=100, tolerance=0.02)  # 2 misses in a window of 100
    398
    """
    h = np.asarray(hits, dtype=float)
    end = len(h) if end is None else min(end, len(h))
    if drift < 1 or drift + window > end:
        return None
    before = h[max(0, drift - window) : drift].mean()
    c = np.concatenate([[0.0], np.cumsum(h)])
    stops = np.arange(drift + window, end + 1)  # window = events [stop - window, stop)
    acc = (c[stops] - c[stops - window]) / window
    ok = np.flatnonzero(acc >= before - tolerance - 1e-12)
    return int(stops[ok[0]] - drift) if ok.size else None
