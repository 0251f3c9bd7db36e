"""Passive-Aggressive learning (Crammer, Dekel, Keshet, Shalev-Shwartz, Singer, JMLR 2006).

Each step moves the weights as little as possible while making the hinge (classification) or
epsilon-insensitive (regression) loss zero: PA (``mode=0``), or paying a slack penalty ``C·ξ``
(PA-I, ``mode=1``) or ``C·ξ²`` (PA-II, ``mode=2``).  With the defaults on binary data the
classifier reproduces River's ``linear_model.PAClassifier(C=1, mode=1)`` and scikit-learn's
``PassiveAggressiveClassifier(C=1)``.

The module holds the learners and, after them, their banks (:class:`PAClassifierBank`,
:class:`PARegressorBank`): the same steps on many models at once, bit for bit (the bank
machinery they build on is :mod:`oml_algorithms._bank`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from river import base

from oml.bank import BankPrediction
from oml.learner import InvalidInput, check_target
from oml_algorithms._bank import LinearBank
from oml_algorithms._classifier_bank import ClassifierBank
from oml_algorithms._core import (
    NP,
    NUMBERS,
    PY,
    check_choice,
    check_number,
    halves,
    sigmoid,
    sigmoid_many,
    softmax,
    softmax_many,
)
from oml_algorithms._linear import LinearClassifier, LinearModel

__all__ = ["PAClassifier", "PAClassifierBank", "PARegressor", "PARegressorBank", "tau"]

BIASES = ("intercept", "feature", "none")


def tau(loss: Any, sq: Any, mode: int, C: float, ops: Any = PY) -> Any:
    """The step size for a loss and a squared norm, for floats (``ops=PY``) or arrays (``NP``)."""
    if mode == 0:
        return loss / sq
    if mode == 1:
        return ops.minimum(C, loss / sq)
    return loss / (sq + 0.5 / C)


def _check_params(C: Any, mode: Any, bias: Any) -> None:
    check_number("C", C)
    check_choice("mode", mode, (0, 1, 2))
    check_choice("bias", bias, BIASES)


class PAClassifier(LinearClassifier, base.Classifier):
    """Passive-Aggressive classifier: PA, PA-I or PA-II, binary or multiclass.

    While it knows at most two classes the model is one weight vector ``w`` (and intercept
    ``b``); the greater class in ``oml.learner.label_sort_key`` order is the positive one, and it is
    predicted only when ``w·x + b > 0``.  From three classes on it keeps one row per class and
    makes the max-score multi-prototype update: the true class ``r`` against the best-scoring
    other class ``s`` (ties go to the lowest class), loss ``max(0, 1 - (w_r·x - w_s·x))``, with
    ``2‖x‖²`` in place of ``‖x‖²`` in the step.  When a third class appears, the binary ``w``
    becomes the rows ``-w/2`` and ``w/2`` (the two scores differ by the old binary score, so
    predictions do not change) and the new class starts at zero.

    Parameters
    ----------
    C
        Aggressiveness: the step cap of PA-I, the slack weight of PA-II.  Unused by PA.
    mode
        0 = PA, 1 = PA-I, 2 = PA-II.
    bias
        ``"intercept"``: a separate intercept that takes the same step as ``w`` and is not part
        of ``‖x‖²`` (as River and scikit-learn do).  ``"feature"``: a constant 1 feature.
        ``"none"``: no bias.
    classes
        Classes known from the start (optional).  Other labels are added as they appear.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from oml_algorithms.pa import PAClassifier
    >>> evaluate.progressive_val_score(datasets.Phishing(), PAClassifier(), metrics.Accuracy())
    Accuracy: 83.59%

    """

    algorithm = "pa"
    state_version = 1

    def __init__(
        self, C: float = 1.0, mode: int = 1, bias: str = "intercept", classes: list | None = None
    ) -> None:
        _check_params(C, mode, bias)
        self.C = C
        self.mode = mode
        self.bias = bias
        self.classes = classes
        self._intercept = bias == "intercept"
        self._init_columns(1 if bias == "feature" else 0)
        self._init_labels(classes)
        D = self._n_bias
        if self._multi:
            self._W = np.zeros((len(self._labels), D))
            self._B = np.zeros(len(self._labels))
        else:
            self._w = np.zeros(D)
            self._b = 0.0

    # ---- scores and updates ---------------------------------------------------------------

    def _forward(self, xv: np.ndarray) -> Any:
        if self._multi:
            return np.vecdot(self._W, xv) + self._B
        return float(self._w.dot(xv)) + self._b

    def _learn_binary(self, xv: np.ndarray, y: float) -> bool:
        loss = 1.0 - y * self._scores(xv)
        if not loss > 0.0:
            return False
        sq = float(xv.dot(xv))
        if sq == 0.0 and (self.mode != 2 or not self._intercept):
            return False
        t = tau(loss, sq, self.mode, self.C)
        if not math.isfinite(t):  # PA with a subnormal ‖x‖²: no step rather than inf weights
            return False
        step = t * y
        self._w += step * xv
        if self._intercept:
            self._b += step
        return True

    def _learn_multi(self, xv: np.ndarray, r: int) -> bool:
        scores = self._scores(xv)
        s = int(np.argmax(np.where(np.arange(len(scores)) == r, -np.inf, scores)))
        loss = 1.0 - float(scores[r] - scores[s])
        if not loss > 0.0:
            return False
        sq = float(xv.dot(xv))
        if sq == 0.0 and (self.mode != 2 or not self._intercept):
            return False
        t = tau(loss, 2.0 * sq, self.mode, self.C)
        if not math.isfinite(t):
            return False
        step = t * xv
        self._W[r] += step
        self._W[s] -= step
        if self._intercept:
            self._B[r] += t
            self._B[s] -= t
        return True

    def _proba(self, xv: np.ndarray) -> list[float]:
        """Binary: sigmoid of the score (as River).  Multiclass: softmax of the class scores.
        Neither is calibrated."""
        scores = self._scores(xv)
        if not self._multi:
            p = sigmoid(scores)
            return [1.0 - p, p]
        return softmax(scores.tolist())

    # ---- classes and columns --------------------------------------------------------------

    def _flip(self) -> None:
        self._w = 0.0 - self._w
        self._b = 0.0 - self._b

    def _promote(self) -> None:
        self._W = np.stack(halves(self._w, odd=True))
        self._B = np.array(halves(self._b, odd=True))
        self._multi = True

    def _insert_class(self, pos: int) -> None:
        self._W = np.insert(self._W, pos, 0.0, axis=0)
        self._B = np.insert(self._B, pos, 0.0)

    def _grow(self, n_new: int) -> None:
        if self._multi:
            self._W = np.pad(self._W, ((0, 0), (0, n_new)))
        else:
            self._w = np.pad(self._w, (0, n_new))

    # ---- state ----------------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        if self._multi:
            arrays = {"w": self._W.copy(), "b": self._B.copy()}
        else:
            arrays = {"w": self._w[None, :].copy(), "b": np.array([self._b])}
        if not self._intercept:
            del arrays["b"]
        return arrays

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        rows = len(self._labels) if self._multi else 1
        shapes = {"w": (rows, self._n_bias + len(self._names)), "b": (rows,)}
        if not self._intercept:
            del shapes["b"]
        return shapes

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        w = arrays["w"]
        b = arrays["b"] if self._intercept else np.zeros(len(w))
        if self._multi:
            self._W, self._B = w, b
        else:
            self._w, self._b = w[0], float(b[0])

    @classmethod
    def make_bank(cls, template: Any) -> PAClassifierBank:
        return PAClassifierBank(template)


class PARegressor(LinearModel, base.Regressor):
    """Passive-Aggressive regressor with the epsilon-insensitive loss (paper form).

    Loss ``max(0, |w·x + b - y| - eps)``; a step of size ``tau`` towards ``y``.  This matches
    scikit-learn's ``PassiveAggressiveRegressor`` (and ``SGDRegressor`` with
    ``loss="epsilon_insensitive", penalty=None, learning_rate="pa1"``), not River's
    ``PARegressor``, whose loss rewrites the target as ``2y - 1``.

    Parameters
    ----------
    C
        Aggressiveness: the step cap of PA-I, the slack weight of PA-II.  Unused by PA.
    mode
        0 = PA, 1 = PA-I, 2 = PA-II.
    eps
        Width of the insensitive band.
    bias
        ``"intercept"`` (separate, outside ``‖x‖²``), ``"feature"`` (constant 1) or ``"none"``.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from oml_algorithms.pa import PARegressor
    >>> evaluate.progressive_val_score(datasets.TrumpApproval(), PARegressor(), metrics.MAE())
    MAE: 0.227029

    """

    algorithm = "pa-regressor"
    state_version = 1

    def __init__(
        self, C: float = 1.0, mode: int = 1, eps: float = 0.1, bias: str = "intercept"
    ) -> None:
        _check_params(C, mode, bias)
        check_number("eps", eps, strict=False)
        self.C = C
        self.mode = mode
        self.eps = eps
        self.bias = bias
        self._intercept = bias == "intercept"
        self._init_columns(1 if bias == "feature" else 0)
        self._w = np.zeros(self._n_bias)
        self._b = 0.0

    def _forward(self, xv: np.ndarray) -> float:
        return float(self._w.dot(xv)) + self._b

    def predict_one(self, x: dict, **kwargs: Any) -> float:
        model, xv = self._input(x)
        return model._scores(xv)

    def learn_one(self, x: dict, y: Any) -> None:
        xv, new = self._learn_input(x)
        target = y if y.__class__ is float and math.isfinite(y) else check_target(y)
        xv = self._learn_vector(x, xv, new)
        p = self._scores(xv)
        loss = abs(target - p) - self.eps
        if not loss > 0.0:
            return
        sq = float(xv.dot(xv))
        if sq == 0.0 and (self.mode != 2 or not self._intercept):
            return
        step = tau(loss, sq, self.mode, self.C)
        if not math.isfinite(step):
            return
        if target - p < 0.0:
            step = -step
        self._w += step * xv
        if self._intercept:
            self._b += step
        self._updates += 1
        self._version += 1

    def _grow(self, n_new: int) -> None:
        self._w = np.pad(self._w, (0, n_new))

    def _state_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"w": self._w[None, :].copy(), "b": np.array([self._b])}
        if not self._intercept:
            del arrays["b"]
        return arrays

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {"w": (1, self._n_bias + len(self._names)), "b": (1,)}
        if not self._intercept:
            del shapes["b"]
        return shapes

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        self._w = arrays["w"][0]
        self._b = float(arrays["b"][0]) if self._intercept else 0.0

    @classmethod
    def make_bank(cls, template: Any) -> PARegressorBank:
        return PARegressorBank(template)

# ------------------------------------------------------------------------------------------------
# the banks: many models as rows, the same arithmetic on arrays (see :mod:`oml_algorithms._bank`)


def _affine(d: Mapping[str, np.ndarray], rows: np.ndarray, X: np.ndarray) -> np.ndarray:
    """w·x + b of each row's one weight vector (binary classifiers and the regressor)."""
    return np.vecdot(d["w"][rows, : X.shape[1]], X) + d["b"][rows]


class PAClassifierBank(ClassifierBank):
    """:class:`PAClassifier` models as rows (see :mod:`oml_algorithms._bank`)."""

    odd = {"w": True, "b": True}

    def __init__(self, template: Any) -> None:
        super().__init__(template)
        self.intercept = template.bias == "intercept"

    def _binary_scores(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        return _affine(self.rows.data, rows, X)

    def _binary_proba(self, rows: np.ndarray, X: np.ndarray, f: np.ndarray) -> np.ndarray:
        return sigmoid_many(f)

    def _learn_binary(self, rows: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        p, d = self.proto, self.rows.data
        loss = 1.0 - y * self._binary_scores(rows, X)
        sq = np.vecdot(X, X)
        ok = (loss > 0.0) & ~_skip_zero(sq, p.mode, self.intercept)
        i = np.flatnonzero(ok)
        if not len(i):
            return ok
        with np.errstate(over="ignore"):
            t = tau(loss[i], sq[i], p.mode, p.C, NP)
        i, t = _finite_steps(ok, i, t)
        step = t * y[i]
        d["w"][rows[i], : X.shape[1]] += step[:, None] * X[i]
        if self.intercept:
            d["b"][rows[i]] += step
        return ok

    def _multi_scores(self, slots: np.ndarray, X: np.ndarray) -> np.ndarray:
        d = self.multi.data
        return np.vecdot(d["w"][slots, :, : X.shape[1]], X[:, None, :]) + d["b"][slots]

    def _multi_proba(
        self, slots: np.ndarray, X: np.ndarray, scores: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        return softmax_many(scores, known)

    def _learn_multi(self, slots: np.ndarray, X: np.ndarray, r: np.ndarray) -> np.ndarray:
        p, d = self.proto, self.multi.data
        scores = self._multi_scores(slots, X)
        s = self._rival(slots, scores, r)
        n = np.arange(len(r))
        loss = 1.0 - (scores[n, r] - scores[n, s])
        sq = np.vecdot(X, X)
        ok = (loss > 0.0) & ~_skip_zero(sq, p.mode, self.intercept)
        i = np.flatnonzero(ok)
        if not len(i):
            return ok
        with np.errstate(over="ignore"):
            t = tau(loss[i], 2.0 * sq[i], p.mode, p.C, NP)
        i, t = _finite_steps(ok, i, t)
        step = t[:, None] * X[i]
        D = X.shape[1]
        d["w"][slots[i], r[i], :D] += step
        d["w"][slots[i], s[i], :D] -= step
        if self.intercept:
            d["b"][slots[i], r[i]] += t
            d["b"][slots[i], s[i]] -= t
        return ok


class PARegressorBank(LinearBank):
    """:class:`PARegressor` models as rows (see :mod:`oml_algorithms._bank`)."""

    def __init__(self, template: Any) -> None:
        super().__init__(template)
        self.intercept = template.bias == "intercept"

    def _predict(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        return _affine(self.rows.data, rows, X)

    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        rows, X = self._stage(rows, X)
        p = self._predict(rows, X)
        return BankPrediction(labels=p.tolist(), score=p)

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        rows, X = self._stage(rows, X, learn=True)
        if len(y) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(y)} targets")
        ok, errors = self._refuse_features(X, xs)
        target = _targets(y, ok, errors)
        i = np.flatnonzero(ok)
        rows, X, target = rows[i], X[i], target[i]

        p, d = self.proto, self.rows.data
        pred = self._predict(rows, X)
        loss = np.abs(target - pred) - p.eps
        sq = np.vecdot(X, X)
        ok = (loss > 0.0) & ~_skip_zero(sq, p.mode, self.intercept)
        j = np.flatnonzero(ok)
        with np.errstate(over="ignore"):
            step = tau(loss[j], sq[j], p.mode, p.C, NP)
        j, step = _finite_steps(ok, j, step)
        step = np.where(target[j] - pred[j] < 0.0, -step, step)
        d["w"][rows[j], : X.shape[1]] += step[:, None] * X[j]
        if self.intercept:
            d["b"][rows[j]] += step
        self._updates[rows[j]] += 1
        return errors


def _targets(y: Sequence[Any], ok: np.ndarray, errors: list) -> np.ndarray:
    """The targets as floats; a bad one refuses its event (``ok`` and ``errors`` updated)."""
    target = None
    if NUMBERS.issuperset(map(type, y)):
        with contextlib.suppress(OverflowError):
            target = np.array(y, dtype=np.float64)
    if target is None or not np.isfinite(target[ok]).all():
        target = np.zeros(len(y))
        for i in np.flatnonzero(ok).tolist():
            try:
                target[i] = check_target(y[i])
            except InvalidInput as exc:
                ok[i], errors[i] = False, exc
    return target


def _skip_zero(sq: np.ndarray, mode: int, intercept: bool) -> np.ndarray:
    """Where ``‖x‖² = 0`` leaves nothing to update (PA-II with an intercept still moves b), as
    the one-model ``sq == 0.0 and (mode != 2 or not intercept)``."""
    if mode == 2 and intercept:
        return np.zeros(len(sq), bool)
    return sq == 0.0


def _finite_steps(ok: np.ndarray, i: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the events whose PA step overflowed (as the single models do)."""
    finite = np.isfinite(t)
    if finite.all():
        return i, t
    ok[i[~finite]] = False
    return i[finite], t[finite]
