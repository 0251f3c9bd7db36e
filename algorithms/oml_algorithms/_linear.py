"""The one-model machinery of the built-in learners: columns, input reading, classes, state.

Every learner here is linear over a list of *columns* that grows as features appear.  When the
bias is a feature (``bias="feature"``), column 0 is a constant 1; the other columns are feature
names in the order the model first learned from them.  A feature an event lacks counts as 0.  A
column the model never saw a non-zero value in keeps its initial values (weight 0; for SCW mean 0
and variance ``a``), so it changes neither predictions nor updates.

The bank path (:mod:`oml_algorithms._bank`) repeats this arithmetic bit for bit.  To make that
possible, dot products are ``a.dot(b)`` (or ``np.vecdot``) here and ``np.vecdot`` there, which
numpy computes with the same kernel, and the formulas are shared (:mod:`oml_algorithms._core`).
"""

from __future__ import annotations

import bisect
import inspect
import itertools
import math
import operator
import struct
from collections.abc import Hashable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Self

import numpy as np

from oml.learner import (
    InvalidInput,
    Label,
    Learner,
    ModelState,
    StateError,
    check_label,
    label_key,
    label_sort_key,
    plain_param,
)
from oml_algorithms._core import (
    NUMBERS,
    argmax,
    check_classes,
    check_values,
    check_x,
    take_arrays,
)

_READERS = ("_getter", "_packer", "_cache", "_sparse")  # rebuilt, never copied



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

    @property
    def n_bias(self) -> int:
        """1 when column 0 is the constant bias feature (``bias="feature"``), else 0."""
        return self._n_bias

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
        if not NUMBERS.issuperset(map(type, values)):
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
            params={k: plain_param(v) for k, v in self._get_params().items()},
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
