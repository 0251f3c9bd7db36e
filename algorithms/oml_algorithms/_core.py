"""What the built-in learners share: columns, input reading, class labels and state checks.

Every learner here is linear over a list of *columns* that grows as features appear.  When the
bias is a feature (convention (A) of the spec), column 0 is a constant 1; the other columns are
feature names in the order the model first learned from them.  A feature an event lacks counts
as 0.  A column the model never saw a non-zero value in keeps its initial values (weight 0; for
SCW mean 0 and variance ``a``), so it changes neither predictions nor updates.

The batch path (:mod:`oml_algorithms.bank`) repeats this arithmetic bit for bit.  To make that
possible: dot products are ``a.dot(b)`` (or ``np.vecdot``) here and ``np.vecdot`` there, which numpy
computes with the same kernel; formulas used by both paths are written once and take an ``ops``
namespace (:data:`PY` for Python floats, :data:`NP` for arrays); the few transcendental functions
(exp, erfc) always come from :mod:`math`; and sums over classes run left to right.
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import math
import operator
import struct
from collections.abc import Hashable, Mapping, Sequence
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from oml.learner import (
    InvalidInput,
    Label,
    Learner,
    ModelState,
    StateError,
    check_features,
    check_label,
    label_key,
    label_sort_key,
)

TINY = 1e-12  # a step no larger than this is no step (spec §5)
SQRT2 = math.sqrt(2.0)

PY = SimpleNamespace(sqrt=math.sqrt, minimum=min, maximum=max)
NP = SimpleNamespace(sqrt=np.sqrt, minimum=np.minimum, maximum=np.maximum)

_NUMBERS = frozenset({float, int})
_READERS = ("_getter", "_packer", "_cache", "_sparse")  # rebuilt, never copied


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
    if _NUMBERS.issuperset(map(type, values)):
        try:
            if math.isfinite(sum(values)):
                return
        except OverflowError:
            pass
    check_x(x)


def plain(value: Any) -> Any:
    """A parameter value as plain JSON-like data."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


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


# --------------------------------------------------------------------------------------------
# the shared model machinery


class LinearModel(Learner):
    """Columns, input reading, the predict-then-learn cache and the state round trip.

    Subclasses set ``_n_bias`` (1 when column 0 is the constant bias feature) through
    :meth:`_init_columns` and implement ``_grow`` (make room for new columns), ``_forward`` (the
    scores of a vector), ``_state_arrays``, ``_array_shapes`` and ``_set_arrays``.
    """

    _n_bias: int
    _names: list[Hashable]
    _index: dict[Hashable, int]

    if TYPE_CHECKING:

        def _get_params(self) -> dict[str, Any]: ...

    def _init_columns(self, n_bias: int) -> None:
        self._n_bias = n_bias
        self._names = []
        self._index = {}  # name -> column (bias included)
        self._updates = 0
        self._version = 0  # bumped by every change of the parameters
        self._sync_columns()

    def _sync_columns(self) -> None:
        """Rebuild the readers after the columns changed."""
        names = self._names
        self._d = len(names)
        if len(names) == 1:
            only = names[0]
            self._getter: Any = lambda x: (x[only],)
        else:
            self._getter = operator.itemgetter(*names) if names else None
        self._packer = struct.Struct(f"{self._n_bias + len(names)}d")
        # last vector read in full: [values, vector, version of its scores, scores]
        self._cache: list | None = None
        self._sparse: tuple[tuple, np.ndarray] | None = None  # last key order with a gap

    @property
    def n_updates(self) -> int:
        return self._updates

    def __getstate__(self) -> dict[str, Any]:
        """For ``copy`` and River's tooling: everything but the readers, which are rebuilt.
        (oml itself moves state only as a ModelState.)"""
        return {k: v for k, v in self.__dict__.items() if k not in _READERS}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._sync_columns()

    # ---- reading an event ----------------------------------------------------------------

    def _vector(self, x: Any) -> np.ndarray | None:
        """``x`` as a float64 vector over the columns, or None if it needs :meth:`_parse`.

        The common case (a dict with exactly the model's features) costs one ``itemgetter``
        call, a type test, a sum and a ``struct.pack``.  The values are remembered, so that
        ``learn_one`` right after ``predict_one`` on equal values reuses the vector and scores.
        """
        if type(x) is not dict:
            return None
        if len(x) != self._d or self._getter is None:
            return self._sparse_vector(x)
        try:
            values = self._getter(x)
        except KeyError:
            return self._sparse_vector(x)
        cache = self._cache
        if cache is not None and values == cache[0]:
            return cache[1]
        if not _NUMBERS.issuperset(map(type, values)):
            check_x(x)  # numpy scalars, Fractions... pass; anything else raises
        try:
            finite = math.isfinite(sum(values))
        except OverflowError:
            finite = False
        if not finite:
            check_x(x)  # NaN or inf raise; a sum that merely overflows passes
        pack = self._packer.pack
        xv = np.frombuffer(pack(1.0, *values) if self._n_bias else pack(*values))
        self._cache = [values, xv, -1, None]
        return xv

    def _sparse_vector(self, x: dict) -> np.ndarray | None:
        """A dict that lacks some of the model's features (but has no new one)."""
        if not x:
            return None
        keys = tuple(x)
        sparse = self._sparse
        if sparse is not None and sparse[0] == keys:
            cols = sparse[1]
        else:
            index = self._index
            found = [index.get(k) for k in keys]
            if None in found:
                return None
            cols = np.array(found, dtype=np.intp)
            self._sparse = (keys, cols)
        values = tuple(x.values())
        check_values(x, values)
        xv = np.zeros(self._n_bias + len(self._names))
        xv[: self._n_bias] = 1.0
        xv[cols] = np.frombuffer(struct.pack(f"{len(values)}d", *values))
        return xv

    def _parse(self, x: Any) -> list[Hashable]:
        """Check ``x`` in full; return the names it has that the model has no column for."""
        check_x(x)
        index = self._index
        return [k for k in x if k not in index]

    def _dense(self, x: Mapping) -> np.ndarray:
        """A checked ``x`` whose names all have columns, as a vector."""
        xv = np.zeros(self._n_bias + len(self._names))
        xv[: self._n_bias] = 1.0
        index = self._index
        xv[[index[k] for k in x]] = [float(v) for v in x.values()]
        return xv

    def _input(self, x: Any) -> tuple[Self, np.ndarray]:
        """For prediction: the model to use and the vector.  A feature the model has no column
        for is read through a widened copy, so that predicting never changes the model."""
        xv = self._vector(x)
        if xv is not None:
            return self, xv
        new = self._parse(x)
        model = self._widened(new) if new else self
        return model, model._dense(x)

    def _learn_input(self, x: Any) -> tuple[np.ndarray | None, list[Hashable]]:
        """For learning: the vector if ``x`` has no new feature, else None and the new names.
        Nothing is changed, so the caller can still refuse the label."""
        xv = self._vector(x)
        if xv is not None:
            return xv, []
        return None, self._parse(x)

    def _learn_vector(self, x: Any, xv: np.ndarray | None, new: list[Hashable]) -> np.ndarray:
        if xv is not None:
            return xv
        if new:
            self._add_columns(new)
        return self._dense(x)

    def _scores(self, xv: np.ndarray) -> Any:
        """:meth:`_forward`, reusing the scores ``predict_one`` computed on the same vector."""
        cache = self._cache
        if cache is not None and cache[1] is xv:
            if cache[2] != self._version:
                cache[3] = self._forward(xv)
                cache[2] = self._version
            return cache[3]
        return self._forward(xv)

    def _forward(self, xv: np.ndarray) -> Any:
        raise NotImplementedError

    # ---- columns --------------------------------------------------------------------------

    def _add_columns(self, names: Sequence[Hashable]) -> None:
        """Append columns for ``names`` (all new), as if never seen."""
        for name in names:
            self._index[name] = self._n_bias + len(self._names)
            self._names.append(name)
        self._grow(len(names))
        self._version += 1
        self._sync_columns()

    def _grow(self, n_new: int) -> None:
        raise NotImplementedError

    def _widened(self, new: list[Hashable]) -> Self:
        other = object.__new__(type(self))
        other.__dict__.update(self.__dict__)
        other._names = list(self._names)
        other._index = dict(self._index)
        other._add_columns(new)  # rebinds the parameter arrays, so self's are untouched
        return other

    # ---- state ----------------------------------------------------------------------------

    def _state_labels(self) -> list[Label]:
        return []

    def _state_arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _array_shapes(self) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def _set_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def export_state(self) -> ModelState:
        return ModelState(
            algorithm=type(self).algorithm,
            version=type(self).state_version,
            params={k: plain(v) for k, v in self._get_params().items()},
            features=list(self._names),
            labels=self._state_labels(),
            arrays=self._state_arrays(),
            n_updates=self._updates,
        )

    @classmethod
    def import_state(cls, state: ModelState) -> Self:
        if not isinstance(state, ModelState):
            raise StateError(f"expected a ModelState, got {type(state).__name__}")
        if state.algorithm != cls.algorithm:
            raise StateError(
                f"the state is for algorithm {state.algorithm!r}, not {cls.algorithm!r}"
            )
        if state.version != cls.state_version:
            raise StateError(
                f"{cls.algorithm} state version {state.version!r} is not supported "
                f"(this build reads version {cls.state_version})"
            )
        if state.extra:
            raise StateError(f"unexpected extra fields {sorted(state.extra)}")
        n_updates = state.n_updates
        if isinstance(n_updates, bool) or not isinstance(n_updates, int) or n_updates < 0:
            raise StateError(f"n_updates must be a non-negative int, got {n_updates!r}")
        model = cls._from_params(state.params)
        model._load_features(state.features)
        model._load_labels(state.labels)
        model._set_arrays(take_arrays(state.arrays, model._array_shapes()))
        model._updates = n_updates
        return model

    @classmethod
    def _from_params(cls, params: Any) -> Self:
        if not isinstance(params, Mapping):
            raise StateError(f"params must be a dict, got {type(params).__name__}")
        expected = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        if set(params) != set(expected):
            raise StateError(f"params must be exactly {expected}, got {sorted(map(str, params))}")
        try:
            return cls(**params)
        except (TypeError, ValueError) as exc:
            raise StateError(f"bad {cls.algorithm} params: {exc}") from None

    def _load_features(self, features: Any) -> None:
        if not isinstance(features, list):
            raise StateError(f"features must be a list, got {type(features).__name__}")
        try:
            unique = len(set(features)) == len(features)
        except TypeError:
            raise StateError("feature names must be hashable") from None
        if not unique:
            raise StateError("feature names must be unique")
        self._names = list(features)
        self._index = {name: self._n_bias + i for i, name in enumerate(features)}
        self._sync_columns()

    def _load_labels(self, labels: Any) -> None:
        if labels != []:
            raise StateError(f"a regressor's state has no labels, got {labels!r}")


class LinearClassifier(LinearModel):
    """Class bookkeeping for the classifiers.

    Classes are indexed in ``label_sort_key`` order.  With at most two known classes the model
    is binary: class index 1 is the positive class (+1) and index 0 the negative one (-1), so a
    single known class counts as negative.  Subclasses implement ``_flip`` (negate a binary
    model), ``_promote`` (turn a binary model into a two-row multiclass one) and
    ``_insert_class`` (add a fresh class row), plus ``_learn_binary`` and ``_learn_multi``.
    """

    _labels: list[Label]

    @property
    def _multiclass(self) -> bool:  # River's tag: this classifier handles more than 2 classes
        return True

    def _init_labels(self, classes: Any) -> None:
        self._set_labels(check_classes(classes))

    def _set_labels(self, labels: list[Label]) -> None:
        self._labels = labels
        self._lindex = {label_key(c): i for i, c in enumerate(labels)}
        # fast lookups by (type, value); numpy scalars and 1.0-for-1 are added as they come
        self._lfast: dict[tuple[type, Any], int] = {(type(c), c): i for i, c in enumerate(labels)}
        self._multi = len(labels) > 2

    def _find_label(self, y: Any) -> tuple[Label, int | None]:
        """The checked label and its class index (None if new).  Changes nothing."""
        try:
            idx = self._lfast.get((y.__class__, y))
        except TypeError:  # unhashable
            idx = None
        if idx is not None:
            return y, idx
        label = check_label(y)
        idx = self._lindex.get(label_key(label))
        if idx is not None:
            self._lfast[(y.__class__, y)] = idx
        return label, idx

    def _add_label(self, label: Label) -> int:
        keys = [label_sort_key(c) for c in self._labels]
        pos = bisect.bisect(keys, label_sort_key(label))
        before = len(self._labels)
        self._set_labels([*self._labels[:pos], label, *self._labels[pos:]])
        if before == 1 and pos == 0:
            self._flip()  # the known class moves to index 1: it becomes the positive one
        elif before == 2:
            self._promote()
            self._insert_class(pos)
        elif before > 2:
            self._insert_class(pos)
        self._version += 1
        return pos

    def _flip(self) -> None:
        raise NotImplementedError

    def _promote(self) -> None:
        raise NotImplementedError

    def _insert_class(self, pos: int) -> None:
        raise NotImplementedError

    def _learn_binary(self, xv: np.ndarray, y: float) -> bool:
        raise NotImplementedError

    def _learn_multi(self, xv: np.ndarray, r: int) -> bool:
        raise NotImplementedError

    def _proba(self, xv: np.ndarray) -> list[float]:
        raise NotImplementedError

    # ---- River's interface ----------------------------------------------------------------

    def learn_one(self, x: dict[Hashable, Any], y: Any) -> None:
        xv = self._vector(x)
        new = self._parse(x) if xv is None else None  # checks x before anything changes
        try:
            idx = self._lfast.get((y.__class__, y))
        except TypeError:  # unhashable: _find_label says why
            idx = None
        label = y
        if idx is None:
            label, idx = self._find_label(y)
        if xv is None:
            if new:
                self._add_columns(new)
            xv = self._dense(x)
        if idx is None:
            idx = self._add_label(label)
        if self._multi:
            changed = self._learn_multi(xv, idx)
        else:
            changed = self._learn_binary(xv, 1.0 if idx == 1 else -1.0)
        if changed:
            self._updates += 1
            self._version += 1

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> Any:
        xv = self._vector(x)
        model = self
        if xv is None:
            model, xv = self._input(x)
        labels = self._labels
        if len(labels) < 2:
            return labels[0] if labels else None
        if model._multi:
            return labels[argmax(model._scores(xv).tolist())]
        return labels[1] if model._scores(xv) > 0.0 else labels[0]

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any) -> dict[Any, float]:
        model, xv = self._input(x)
        labels = self._labels
        if len(labels) < 2:
            return {labels[0]: 1.0} if labels else {}
        return dict(zip(labels, model._proba(xv), strict=True))

    # ---- state ----------------------------------------------------------------------------

    def _state_labels(self) -> list[Label]:
        return list(self._labels)

    def _load_labels(self, labels: Any) -> None:
        if not isinstance(labels, list):
            raise StateError(f"labels must be a list, got {type(labels).__name__}")
        checked = []
        for c in labels:
            try:
                checked.append(check_label(c))
            except InvalidInput:
                raise StateError(f"{c!r} is not a class label") from None
        keys = [label_sort_key(c) for c in checked]
        if any(a >= b for a, b in itertools.pairwise(keys)):
            raise StateError("labels must be unique and in label_sort_key order")
        known = {label_key(c) for c in checked}
        missing = [c for c in self._labels if label_key(c) not in known]
        if missing:
            raise StateError(f"labels lack the classes given as a parameter: {missing!r}")
        self._set_labels(checked)
