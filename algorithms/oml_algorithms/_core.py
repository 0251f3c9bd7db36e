"""What the built-in learners share: the numeric helpers and the parameter and input checks.

Every formula that both the one-model path (:mod:`oml_algorithms._linear`) and the bank path
(:mod:`oml_algorithms._bank`) compute is written once: here for the helpers (each with a scalar
form and an array form that agree bit for bit), in the learner's own module for its step sizes.
A formula takes an ``ops`` namespace (:data:`PY` for Python floats, :data:`NP` for arrays); the
few transcendental functions (exp, erfc) always come from :mod:`math`, element by element; and
sums over classes run left to right.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import SimpleNamespace
from typing import Any

import numpy as np

from oml.learner import (
    InvalidInput,
    Label,
    StateError,
    check_features,
    check_label,
    label_key,
    label_sort_key,
)

TINY = 1e-12
"""An SCW step with alpha·√v no larger than this is no step.  alpha shrinks as 1/‖x‖ and √v grows as
‖x‖, so the test does not depend on the features' scale (alpha alone did: one feature at the scale
of an epoch-millisecond timestamp, 1.7e12, stopped every update)."""
SQRT2 = math.sqrt(2.0)

PY = SimpleNamespace(sqrt=math.sqrt, minimum=min, maximum=max)
NP = SimpleNamespace(sqrt=np.sqrt, minimum=np.minimum, maximum=np.maximum)

NUMBERS = frozenset({float, int})  # the types the fast paths take without a full check


# --------------------------------------------------------------------------------------------
# small numeric helpers, each with a scalar form and an array form that agree bit for bit


def _map(fn: Any, a: np.ndarray) -> np.ndarray:
    """``fn`` (a :mod:`math` function) applied to every element of ``a``."""
    return np.fromiter(map(fn, a.ravel().tolist()), np.float64, a.size).reshape(a.shape)


def sigmoid(z: float) -> float:
    if z >= 0.0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def sigmoid_many(z: np.ndarray) -> np.ndarray:
    e = _map(math.exp, -np.abs(z))
    return np.where(z >= 0.0, 1.0 / (1.0 + e), e / (1.0 + e))


def probit(mean: float, var: float) -> float:
    """P(s > 0) for a score s ~ N(mean, var): Φ(mean/√var)."""
    if var > 0.0:
        return 0.5 * math.erfc(-(mean / math.sqrt(var)) / SQRT2)
    return 1.0 if mean > 0.0 else 0.0 if mean < 0.0 else 0.5


def probit_many(mean: np.ndarray, var: np.ndarray) -> np.ndarray:
    pos = var > 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(pos, -(mean / np.sqrt(var)) / SQRT2, 0.0)
    p = 0.5 * _map(math.erfc, z)
    return np.where(pos, p, np.where(mean > 0.0, 1.0, np.where(mean < 0.0, 0.0, 0.5)))


def total(values: Sequence[float]) -> float:
    """Left-to-right sum (``np.cumsum(...)[..., -1]`` in the batch path)."""
    t = 0.0
    for v in values:
        t += v
    return t


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    e = [math.exp(s - top) for s in scores]
    t = total(e)
    return [v / t for v in e]


def softmax_many(scores: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Row-wise :func:`softmax` over the known classes (0 for the others)."""
    s = np.where(known, scores, -np.inf)
    e = _map(math.exp, s - s.max(axis=1, keepdims=True))
    return e / np.cumsum(e, axis=1)[:, -1:]


def rival_proba(m: list[float], v: list[float]) -> list[float]:
    """Class probabilities from independent Gaussian class scores N(m_j, v_j).

    Each class is scored against its strongest rival (the best other class; for the best
    class, the runner-up): q_j = Φ((m_j - m_rival) / √(v_j + v_rival)), then the q_j are
    normalised.  With two classes this is exactly the binary Φ(m/√v).
    """
    top = argmax(m)
    second = argmax(m, skip=top)
    q = []
    for j in range(len(m)):
        r = second if j == top else top
        q.append(probit(m[j] - m[r], v[j] + v[r]))
    t = total(q)
    return [p / t for p in q]


def rival_proba_many(m: np.ndarray, v: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Row-wise :func:`rival_proba` over the known classes (0 for the others)."""
    s = np.where(known, m, -np.inf)
    rows = np.arange(len(s))
    top = s.argmax(axis=1)
    s[rows, top] = -np.inf
    second = s.argmax(axis=1)
    cls = np.arange(s.shape[1])[None, :]
    rival = np.where(cls == top[:, None], second[:, None], top[:, None])
    mr = np.take_along_axis(m, rival, axis=1)
    vr = np.take_along_axis(v, rival, axis=1)
    q = np.where(known, probit_many(m - mr, v + vr), 0.0)
    return q / np.cumsum(q, axis=1)[:, -1:]


def argmax(values: Sequence[float], skip: int = -1) -> int:
    """Index of the largest value (the lowest index on a tie), ignoring index ``skip``."""
    best = -1
    for j, v in enumerate(values):
        if j != skip and (best < 0 or v > values[best]):
            best = j
    return best


def halves(value: Any, odd: bool) -> tuple[Any, Any]:
    """A binary model's parameter split into its (negative, positive) class rows.

    Weights (odd) become -w/2 and w/2, so the two class scores differ by the binary score;
    covariances (even) become S/2 each, so the two variances add up to the binary one.
    """
    half = value / 2.0
    return (0.0 - half, half) if odd else (half, half)


# --------------------------------------------------------------------------------------------
# input checks


def check_x(x: Any) -> None:
    """:func:`oml.learner.check_features`, with a too-large integer reported as InvalidInput."""
    try:
        check_features(x)
    except OverflowError:
        raise InvalidInput("a feature value is too large for a float", "not_finite") from None


def check_values(x: Mapping, values: tuple) -> None:
    """Check ``x`` whose values are ``values``: a fast test first, the exact one if it fails."""
    if NUMBERS.issuperset(map(type, values)):
        try:
            if math.isfinite(sum(values)):
                return
        except OverflowError:
            pass
    check_x(x)


def check_classes(classes: Any) -> list[Label]:
    """The ``classes`` parameter, checked and sorted."""
    if classes is None:
        return []
    if isinstance(classes, str | bytes) or not isinstance(classes, Sequence | set | frozenset):
        raise ValueError(f"classes must be a list of labels, got {type(classes).__name__}")
    out: dict[tuple[bool, Label], Label] = {}
    for c in classes:
        try:
            label = check_label(c)
        except InvalidInput as exc:
            raise ValueError(str(exc)) from None
        if label_key(label) in out:
            raise ValueError(f"class {label!r} is given twice")
        out[label_key(label)] = label
    return sorted(out.values(), key=label_sort_key)


def check_number(name: str, value: Any, low: float = 0.0, strict: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    if isinstance(value, bool) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def take_arrays(arrays: Any, shapes: dict[str, tuple[int, ...]]) -> dict[str, np.ndarray]:
    """Copies of the state arrays, checked against the expected names, shapes and dtype."""
    if not isinstance(arrays, Mapping):
        raise StateError(f"arrays must be a dict, got {type(arrays).__name__}")
    if set(arrays) != set(shapes):
        raise StateError(f"arrays must be exactly {sorted(shapes)}, got {sorted(map(str, arrays))}")
    out = {}
    for name, shape in shapes.items():
        a = arrays[name]
        if not isinstance(a, np.ndarray) or a.dtype != np.float64:
            raise StateError(f"array {name!r} must be a float64 numpy array")
        if a.shape != shape:
            raise StateError(f"array {name!r} has shape {a.shape}, expected {shape}")
        if not np.isfinite(a).all():
            raise StateError(f"array {name!r} holds NaN or infinite values")
        out[name] = np.array(a, dtype=np.float64, order="C", copy=True)
    return out
