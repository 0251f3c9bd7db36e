"""Soft Confidence-Weighted learning (Wang, Zhao, Hoi, ICML 2012; arXiv 1206.4612).

The weights are a Gaussian N(μ, Σ), starting at μ = 0, Σ = a·I.  An event with margin
``m = y·μ·x`` and variance ``v = xᵀΣx`` updates the model when ``m < φ√v`` (φ = Φ⁻¹(η)):
``μ += α·y·Σx`` and ``Σ -= β(Σx)(Σx)ᵀ``, with α from SCW-I (``mode=1``, penalty C·ℓ) or SCW-II
(``mode=2``, penalty C·ℓ²).  The formulas are those of the spec (§2), cross-checked against
LIBOL and JSAT.
"""

# ruff: noqa: RUF002, RUF003  (the docs use the spec's Greek letters)

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
from river import base

from oml.bank import Bank
from oml.learner import StateError
from oml_algorithms._core import (
    PY,
    TINY,
    LinearClassifier,
    check_choice,
    check_number,
    halves,
    probit,
    rival_proba,
)

__all__ = ["SCWClassifier", "scw_alpha", "scw_beta", "split_sigma"]

COVARIANCES = ("auto", "full", "diagonal")
BIASES = ("feature", "none")


def scw_alpha(m: Any, v: Any, mode: int, C: float, phi: float, ops: Any = PY) -> Any:
    """The mean step α for margin ``m`` and variance ``v`` (floats with ``PY``, arrays ``NP``)."""
    phi2 = phi * phi
    if mode == 1:
        psi = 1.0 + phi2 / 2.0
        zeta = 1.0 + phi2
        root = ops.sqrt(m * m * (phi2 * phi2) / 4.0 + v * phi2 * zeta)
        return ops.minimum(C, ops.maximum(0.0, (-m * psi + root) / (v * zeta)))
    n = v + 0.5 / C
    gamma = phi * ops.sqrt(phi2 * m * m * v * v + 4.0 * n * v * (n + v * phi2))
    denominator = 2.0 * (n * n + n * v * phi2)
    return ops.maximum(0.0, (-(2.0 * m * n + phi2 * m * v) + gamma) / denominator)


def scw_beta(alpha: Any, v: Any, phi: float, ops: Any = PY) -> tuple[Any, Any]:
    """√u and the covariance step β for step α and variance ``v``."""
    t = -alpha * v * phi + ops.sqrt(alpha * alpha * v * v * (phi * phi) + 4.0 * v)
    root_u = ops.sqrt(t * t / 4.0)
    return root_u, alpha * phi / (root_u + v * alpha * phi)


def split_sigma(sigma: np.ndarray, mu: np.ndarray, a: float) -> np.ndarray:
    """The covariance of each class row when a binary model becomes multiclass: Σ/2, so that
    the two variances add up to the binary one, except that a column still at its prior (mean
    0, variance ``a``, no correlation: never seen) keeps variance ``a``, as in a new class."""
    half = sigma / 2.0
    if sigma.ndim == 1:
        return np.where((mu == 0.0) & (sigma == a), sigma, half)
    diag = np.diagonal(sigma)
    lonely = np.count_nonzero(sigma, axis=0) == (diag != 0.0)  # nothing off the diagonal
    fresh = np.flatnonzero((mu == 0.0) & (diag == a) & lonely)
    half[fresh, fresh] = a
    return half


class SCWClassifier(LinearClassifier, base.Classifier):
    """Soft Confidence-Weighted classifier, SCW-I or SCW-II, binary or multiclass.

    Binary while it knows at most two classes (the greater class in ``label_sort_key`` order is
    the positive one; it is predicted when ``μ·x > 0``).  From three classes on it keeps a mean
    and a covariance per class and makes the single-constraint max-score update (spec §2,
    option A): the true class ``r`` against the best other class ``s``, ``m = μ_r·x - μ_s·x``,
    ``v = xᵀΣ_r x + xᵀΣ_s x``, α and β from the binary formulas, ``μ_r += αΣ_r x``,
    ``μ_s -= αΣ_s x`` and both covariances shrink by β.  When a third class appears the binary
    model becomes ``μ_neg = -μ/2, μ_pos = μ/2, Σ_neg = Σ_pos = Σ/2`` (margin and variance
    between the two classes unchanged), except that a feature the model has never seen keeps
    variance ``a`` in both rows, and the new class starts at ``μ = 0, Σ = a·I``.

    ``predict_proba_one``: binary, P(positive) = Φ(μ·x/√v).  Multiclass, each class against
    its strongest rival, q_j = Φ((μ_j·x - μ_rival·x)/√(v_j + v_rival)), normalised to sum to 1
    (equal to the binary formula when there are two classes).

    Covariance: ``"full"`` keeps Σ (d² numbers per class, O(d²) per event); ``"diagonal"``
    keeps only its diagonal and shrinks it with σ_i ← σ_i / (1 + (αφ/√u)σ_i x_i²), which is the
    recommended σ_i ← 1/(1/σ_i + (αφ/√u)x_i²) written so that an absent feature keeps its
    variance exactly.  ``"auto"`` is full while the model has at most ``auto_full_max`` (32)
    features; the first time it has more, Σ is replaced by its diagonal for good (the
    correlations are dropped, the variances kept).

    Parameters
    ----------
    mode
        1 = SCW-I, 2 = SCW-II.
    C
        Aggressiveness: the step cap of SCW-I, the weight of the squared loss of SCW-II.
    eta
        Confidence η in (0.5, 1); φ = Φ⁻¹(η).  None means LIBOL's default: 0.75 for SCW-I,
        0.90 for SCW-II.
    a
        Initial variance of every weight.
    covariance
        ``"auto"``, ``"full"`` or ``"diagonal"``.
    bias
        ``"feature"`` (a constant 1 feature with its own mean and variance) or ``"none"``.
    classes
        Classes known from the start (optional).  Other labels are added as they appear.

    Examples
    --------
    >>> from river import datasets, evaluate, metrics
    >>> from oml_algorithms.scw import SCWClassifier
    >>> evaluate.progressive_val_score(datasets.Phishing(), SCWClassifier(), metrics.Accuracy())
    Accuracy: 89.35%

    """

    algorithm = "scw"
    state_version = 1
    auto_full_max = 32

    def __init__(
        self,
        mode: int = 1,
        C: float = 1.0,
        eta: float | None = None,
        a: float = 1.0,
        covariance: str = "auto",
        bias: str = "feature",
        classes: list | None = None,
    ) -> None:
        check_choice("mode", mode, (1, 2))
        check_number("C", C)
        if eta is not None:
            check_number("eta", eta, low=0.5)
            if eta >= 1.0:
                raise ValueError(f"eta must be < 1, got {eta!r}")
        check_number("a", a)
        check_choice("covariance", covariance, COVARIANCES)
        check_choice("bias", bias, BIASES)
        self.mode = mode
        self.C = C
        self.eta = eta
        self.a = a
        self.covariance = covariance
        self.bias = bias
        self.classes = classes
        self._phi = NormalDist().inv_cdf((0.75 if mode == 1 else 0.90) if eta is None else eta)
        self._init_columns(1 if bias == "feature" else 0)
        self._init_labels(classes)
        self._full = self._full_for(0)
        D = self._n_bias
        if self._multi:
            self._mus = np.zeros((len(self._labels), D))
            self._sigmas = np.stack([self._prior(D)] * len(self._labels))
        else:
            self._mu = np.zeros(D)
            self._sigma = self._prior(D)

    def _full_for(self, n_features: int) -> bool:
        if self.covariance == "auto":
            return n_features <= type(self).auto_full_max
        return self.covariance == "full"

    def _prior(self, D: int) -> np.ndarray:
        """The covariance of a fresh class: a·I (or its diagonal)."""
        return self.a * np.eye(D) if self._full else np.full(D, float(self.a))

    def _sx(self, sigma: np.ndarray, xv: np.ndarray) -> np.ndarray:
        """Σx, for one covariance or a stack of them."""
        return np.vecdot(sigma, xv) if self._full else sigma * xv

    def _shrink(
        self,
        sigma: np.ndarray,
        sx: np.ndarray,
        xv: np.ndarray,
        alpha: float,
        beta: float,
        ru: float,
    ) -> np.ndarray:
        if self._full:
            return sigma - beta * np.outer(sx, sx)
        t = sx * xv  # σ / (1 + c·σx²), c = αφ/√u, with fewer temporaries
        t *= alpha * self._phi / ru
        t += 1.0
        return sigma / t

    # ---- scores and updates ---------------------------------------------------------------

    def _forward(self, xv: np.ndarray) -> Any:
        if self._multi:
            return np.vecdot(self._mus, xv)
        return float(self._mu.dot(xv))

    def _learn_binary(self, xv: np.ndarray, y: float) -> bool:
        m = y * self._scores(xv)
        sigma = self._sigma
        sx = np.vecdot(sigma, xv) if self._full else sigma * xv
        v = float(xv.dot(sx))
        phi = self._phi
        if not (v > 0.0 and phi * math.sqrt(v) - m > 0.0):
            return False
        alpha = scw_alpha(m, v, self.mode, self.C, phi)
        if not alpha > TINY:
            return False
        ru, beta = scw_beta(alpha, v, phi)
        self._mu += alpha * y * sx
        self._sigma = self._shrink(sigma, sx, xv, alpha, beta, ru)
        return True

    def _learn_multi(self, xv: np.ndarray, r: int) -> bool:
        scores = self._scores(xv)
        s = int(np.argmax(np.where(np.arange(len(scores)) == r, -np.inf, scores)))
        m = float(scores[r] - scores[s])
        sigmas = self._sigmas
        sr = self._sx(sigmas[r], xv)
        ss = self._sx(sigmas[s], xv)
        v = float(xv.dot(sr)) + float(xv.dot(ss))
        alpha = self._alpha(m, v)
        if alpha is None:
            return False
        ru, beta = scw_beta(alpha, v, self._phi)
        self._mus[r] += alpha * sr
        self._mus[s] -= alpha * ss
        sigmas[r] = self._shrink(sigmas[r], sr, xv, alpha, beta, ru)
        sigmas[s] = self._shrink(sigmas[s], ss, xv, alpha, beta, ru)
        return True

    def _alpha(self, m: float, v: float) -> float | None:
        """The step α, or None when there is no update (no loss, v = 0, or α ≤ 1e-12)."""
        if not (v > 0.0 and self._phi * math.sqrt(v) - m > 0.0):
            return None
        alpha = scw_alpha(m, v, self.mode, self.C, self._phi)
        return alpha if alpha > TINY else None

    def _proba(self, xv: np.ndarray) -> list[float]:
        scores = self._scores(xv)
        if not self._multi:
            p = probit(scores, float(xv.dot(self._sx(self._sigma, xv))))
            return [1.0 - p, p]
        v = np.vecdot(self._sx(self._sigmas, xv), xv)
        return rival_proba(scores.tolist(), v.tolist())

    # ---- classes and columns --------------------------------------------------------------

    def _flip(self) -> None:
        self._mu = 0.0 - self._mu

    def _promote(self) -> None:
        self._mus = np.stack(halves(self._mu, odd=True))
        sigma = split_sigma(self._sigma, self._mu, float(self.a))
        self._sigmas = np.stack([sigma, sigma])
        self._multi = True

    def _insert_class(self, pos: int) -> None:
        D = self._mus.shape[1]
        self._mus = np.insert(self._mus, pos, 0.0, axis=0)
        self._sigmas = np.insert(self._sigmas, pos, self._prior(D), axis=0)

    def _grow(self, n_new: int) -> None:
        if self._multi:
            self._mus = np.pad(self._mus, ((0, 0), (0, n_new)))
            self._sigmas = self._grow_sigma(self._sigmas, n_new)
        else:
            self._mu = np.pad(self._mu, (0, n_new))
            self._sigma = self._grow_sigma(self._sigma, n_new)
        if self._full and not self._full_for(len(self._names)):
            self._full = False
            if self._multi:
                self._sigmas = np.diagonal(self._sigmas, axis1=-2, axis2=-1).copy()
            else:
                self._sigma = np.diagonal(self._sigma).copy()

    def _grow_sigma(self, sigma: np.ndarray, n_new: int) -> np.ndarray:
        a = float(self.a)
        if not self._full:
            return np.pad(sigma, [(0, 0)] * (sigma.ndim - 1) + [(0, n_new)], constant_values=a)
        D = sigma.shape[-1]
        out = np.pad(sigma, [(0, 0)] * (sigma.ndim - 2) + [(0, n_new), (0, n_new)])
        new = np.arange(D, D + n_new)
        out[..., new, new] = a
        return out

    # ---- state ----------------------------------------------------------------------------

    def _state_arrays(self) -> dict[str, np.ndarray]:
        if self._multi:
            return {"mu": self._mus.copy(), "sigma": self._sigmas.copy()}
        return {"mu": self._mu[None, :].copy(), "sigma": self._sigma[None, ...].copy()}

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        rows = len(self._labels) if self._multi else 1
        D = self._n_bias + len(self._names)
        full = self._full_for(len(self._names))
        return {"mu": (rows, D), "sigma": (rows, D, D) if full else (rows, D)}

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        mu, sigma = arrays["mu"], arrays["sigma"]
        self._full = sigma.ndim == 3
        diag = np.diagonal(sigma, axis1=-2, axis2=-1) if self._full else sigma
        if not (diag > 0.0).all():
            raise StateError("array 'sigma' has a variance that is not positive")
        if self._full and not np.array_equal(sigma, np.swapaxes(sigma, -1, -2)):
            raise StateError("array 'sigma' is not symmetric")
        if self._multi:
            self._mus, self._sigmas = mu, sigma
        else:
            self._mu, self._sigma = mu[0], sigma[0]

    @classmethod
    def make_bank(cls, template: Any) -> Bank:
        from oml_algorithms.bank import SCWBank

        return SCWBank(template)
