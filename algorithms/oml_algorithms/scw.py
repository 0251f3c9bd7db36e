"""Soft Confidence-Weighted learning (Wang, Zhao, Hoi, ICML 2012; arXiv 1206.4612).

The weights are a Gaussian N(μ, Σ), starting at μ = 0, Σ = a·I.  An event with margin
``m = y·μ·x`` and variance ``v = xᵀΣx`` updates the model when ``m < φ√v`` (φ = Φ⁻¹(η)):
``μ += α·y·Σx`` and ``Σ -= β(Σx)(Σx)ᵀ``, with α from SCW-I (``mode=1``, penalty C·ℓ) or SCW-II
(``mode=2``, penalty C·ℓ²).  The formulas are the paper's, cross-checked against LIBOL and
JSAT.

The module holds the learner and, after it, its bank (:class:`SCWBank`): the same steps on many
models at once, bit for bit (the bank machinery it builds on is :mod:`oml_algorithms._bank`).
"""

# ruff: noqa: RUF002, RUF003  (the docs use the paper's Greek letters)

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np
from river import base

from oml.learner import StateError
from oml_algorithms._bank import Arrays, Kind
from oml_algorithms._classifier_bank import ClassifierBank
from oml_algorithms._core import (
    NP,
    PY,
    TINY,
    check_choice,
    check_number,
    halves,
    probit,
    probit_many,
    rival_proba,
    rival_proba_many,
)
from oml_algorithms._linear import LinearClassifier

__all__ = ["SCWBank", "SCWClassifier", "scw_alpha", "scw_beta", "split_sigma"]

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
    and a covariance per class and makes the single-constraint max-score update (as multiclass
    PA does): the true class ``r`` against the best other class ``s``,
    ``m = μ_r·x - μ_s·x``, ``v = xᵀΣ_r x + xᵀΣ_s x``, α and β from the binary formulas,
    ``μ_r += αΣ_r x``, ``μ_s -= αΣ_s x`` and both covariances shrink by β.  When a third
    class appears the binary model becomes ``μ_neg = -μ/2, μ_pos = μ/2, Σ_neg = Σ_pos = Σ/2``
    (margin and variance between the two classes unchanged), except that a feature the model
    has never seen keeps variance ``a`` in both rows, and the new class starts at
    ``μ = 0, Σ = a·I``.

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
        Confidence η in (0.5, 1); φ = Φ⁻¹(η).  None means LIBOL's binary defaults: 0.75 for
        SCW-I, 0.90 for SCW-II, multiclass included (LIBOL's multiclass SCW-II uses 0.75;
        0.90 did better on Iris: 0.98 against 0.9733 at pass 3).
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
        self._full = self.full_for(0)
        D = self._n_bias
        if self._multi:
            self._mus = np.zeros((len(self._labels), D))
            self._sigmas = np.stack([self._prior(D)] * len(self._labels))
        else:
            self._mu = np.zeros(D)
            self._sigma = self._prior(D)

    def full_for(self, n_features: int) -> bool:
        """Whether a model with ``n_features`` features keeps the full covariance."""
        if self.covariance == "auto":
            return n_features <= type(self).auto_full_max
        return self.covariance == "full"

    @property
    def phi(self) -> float:
        """φ = Φ⁻¹(η), the margin a confident prediction must reach, in units of √v."""
        return self._phi

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
        if not alpha * math.sqrt(v) > TINY:
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
        """The step α, or None when there is no update (no loss, v = 0, or a step too small to
        move the margin: α√v ≤ 1e-12, a test free of the features' scale)."""
        if not (v > 0.0 and self._phi * math.sqrt(v) - m > 0.0):
            return None
        alpha = scw_alpha(m, v, self.mode, self.C, self._phi)
        return alpha if alpha * math.sqrt(v) > TINY else None

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
        if self._full and not self.full_for(len(self._names)):
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
        full = self.full_for(len(self._names))
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
    def make_bank(cls, template: Any) -> SCWBank:
        return SCWBank(template)

# ------------------------------------------------------------------------------------------------
# the bank: many models as rows, the same arithmetic on arrays (see :mod:`oml_algorithms._bank`)


class SCWBank(ClassifierBank):
    """:class:`SCWClassifier` models as rows (see :mod:`oml_algorithms._bank`)."""

    odd = {"mu": True, "sigma": False}

    def __init__(self, template: Any) -> None:
        self.full = template.full_for(0)
        super().__init__(template)

    def _kinds(self) -> dict[str, Kind]:
        return {"mu": (1, "zero"), "sigma": (2, "aI") if self.full else (1, "a")}

    def _split(self, row: int, width: int) -> dict[str, tuple[Any, Any]]:
        mu = self.rows.get("mu", (row,), width)
        sigma = split_sigma(self.rows.get("sigma", (row,), width), mu, self.rows.a)
        return {"mu": halves(mu, odd=True), "sigma": (sigma, sigma)}

    def _grow(self, n_features: int) -> None:
        super()._grow(n_features)
        if self.full and not self.proto.full_for(n_features):
            self.full = False  # "auto" past its limit: every row keeps only its variances
            for store in self._stores():
                store.to_diagonal("sigma")

    def _sx(self, sigma: np.ndarray, X: np.ndarray) -> np.ndarray:
        """Σx per event; ``sigma`` has one covariance (or a stack of them) per row of X."""
        if self.full:
            return np.vecdot(sigma, X.reshape(X.shape[:1] + (1,) * (sigma.ndim - 2) + X.shape[1:]))
        return sigma * X.reshape(X.shape[:1] + (1,) * (sigma.ndim - 2) + X.shape[1:])

    def _cov(self, store: Arrays, lead: tuple, D: int) -> np.ndarray:
        return store.data["sigma"][lead + (slice(0, D),) * (2 if self.full else 1)]

    def _shrink(
        self,
        sigma: np.ndarray,
        sx: np.ndarray,
        X: np.ndarray,
        alpha: np.ndarray,
        beta: np.ndarray,
        ru: np.ndarray,
    ) -> np.ndarray:
        if self.full:
            return sigma - beta[:, None, None] * (sx[:, :, None] * sx[:, None, :])
        return sigma / (1.0 + (alpha * self.proto.phi / ru)[:, None] * (sx * X))

    def _alpha(self, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.proto
        with np.errstate(all="ignore"):
            ok = (v > 0.0) & (p.phi * np.sqrt(v) - m > 0.0)
            alpha = scw_alpha(m, v, p.mode, p.C, p.phi, NP)
        return alpha, ok & (alpha * np.sqrt(v) > TINY)

    def _binary_scores(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        return np.vecdot(self.rows.data["mu"][rows, : X.shape[1]], X)

    def _binary_proba(self, rows: np.ndarray, X: np.ndarray, f: np.ndarray) -> np.ndarray:
        v = np.vecdot(X, self._sx(self._cov(self.rows, (rows,), X.shape[1]), X))
        return probit_many(f, v)

    def _learn_binary(self, rows: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        D, mu = X.shape[1], self.rows.data["mu"]
        m = y * self._binary_scores(rows, X)
        sigma = self._cov(self.rows, (rows,), D)
        sx = self._sx(sigma, X)
        v = np.vecdot(X, sx)
        alpha, ok = self._alpha(m, v)
        i = np.flatnonzero(ok)
        if not len(i):
            return ok
        alpha, sx, Xi = alpha[i], sx[i], X[i]
        ru, beta = scw_beta(alpha, v[i], self.proto.phi, NP)
        mu[rows[i], :D] += (alpha * y[i])[:, None] * sx
        self.rows.data["sigma"][(rows[i],) + (slice(0, D),) * (sigma.ndim - 1)] = self._shrink(
            sigma[i], sx, Xi, alpha, beta, ru
        )
        return ok

    def _multi_scores(self, slots: np.ndarray, X: np.ndarray) -> np.ndarray:
        return np.vecdot(self.multi.data["mu"][slots, :, : X.shape[1]], X[:, None, :])

    def _multi_proba(
        self, slots: np.ndarray, X: np.ndarray, scores: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        sx = self._sx(self._cov(self.multi, (slots, slice(None)), X.shape[1]), X)
        v = np.vecdot(sx, X[:, None, :])
        return rival_proba_many(scores, v, known)

    def _learn_multi(self, slots: np.ndarray, X: np.ndarray, r: np.ndarray) -> np.ndarray:
        D, mu = X.shape[1], self.multi.data["mu"]
        scores = self._multi_scores(slots, X)
        s = self._rival(slots, scores, r)
        n = np.arange(len(r))
        m = scores[n, r] - scores[n, s]
        sig_r = self._cov(self.multi, (slots, r), D)
        sig_s = self._cov(self.multi, (slots, s), D)
        sr, ss = self._sx(sig_r, X), self._sx(sig_s, X)
        v = np.vecdot(X, sr) + np.vecdot(X, ss)
        alpha, ok = self._alpha(m, v)
        i = np.flatnonzero(ok)
        if not len(i):
            return ok
        alpha, Xi = alpha[i], X[i]
        ru, beta = scw_beta(alpha, v[i], self.proto.phi, NP)
        mu[slots[i], r[i], :D] += alpha[:, None] * sr[i]
        mu[slots[i], s[i], :D] -= alpha[:, None] * ss[i]
        cols: tuple[Any, ...] = (slice(0, D),) * (sig_r.ndim - 1)
        sigma = self.multi.data["sigma"]
        sigma[(slots[i], r[i], *cols)] = self._shrink(sig_r[i], sr[i], Xi, alpha, beta, ru)
        sigma[(slots[i], s[i], *cols)] = self._shrink(sig_s[i], ss[i], Xi, alpha, beta, ru)
        return ok
