"""Passive-Aggressive learning (Crammer, Dekel, Keshet, Shalev-Shwartz, Singer, JMLR 2006).

Each step moves the weights as little as possible while making the hinge (classification) or
epsilon-insensitive (regression) loss zero: PA (``mode=0``), or paying a slack penalty ``C·ξ``
(PA-I, ``mode=1``) or ``C·ξ²`` (PA-II, ``mode=2``).  With the defaults on binary data the
classifier reproduces River's ``linear_model.PAClassifier(C=1, mode=1)`` and scikit-learn's
``PassiveAggressiveClassifier(C=1)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from river import base

from oml.bank import Bank
from oml.learner import check_target
from oml_algorithms._core import (
    PY,
    LinearClassifier,
    LinearModel,
    check_choice,
    check_number,
    halves,
    sigmoid,
    softmax,
)

__all__ = ["PAClassifier", "PARegressor", "tau"]

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
    def make_bank(cls, template: Any) -> Bank:
        from oml_algorithms.bank import PAClassifierBank

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
    def make_bank(cls, template: Any) -> Bank:
        from oml_algorithms.bank import PARegressorBank

        return PARegressorBank(template)
