"""Banks for the built-in learners: many models as rows of shared numpy arrays.

A bank holds many models of one algorithm and parameter set.  Its parameters are stacked: row
``i`` of ``w`` (or ``mu``, ``sigma``) is model ``i``; capacity doubles as rows are added, and a
column added by :meth:`Bank.columns` starts, in every row, as if never seen (weight 0, variance
``a``).  A wave of events is predicted (a row may come up many times) or learned (each row at
most once) with a handful of numpy operations over all its rows.

Each step repeats the one-model arithmetic of :mod:`oml_algorithms.pa` / :mod:`.scw` bit for
bit, given the same columns: row-wise ``np.vecdot`` computes exactly what ``a.dot(b)`` computes for
one model, the shared formulas (``tau``, ``scw_alpha``, ``scw_beta``) run on arrays, and every
other operation happens in the same order.  ``tests/algorithms/test_learner_bank.py`` checks it
with ``==`` on floats.

Classifier rows may be binary or multiclass and know different classes.  The bank keeps the
union of all classes, in ``label_sort_key`` order; a binary row records which of them are its
negative and positive class, a multiclass row has a slot in a second set of arrays with one
entry per union class and a mask of the classes it knows.  Binary rows (the common case) never
touch the multiclass arrays.

Examples
--------
>>> import numpy as np
>>> from oml_algorithms.pa import PAClassifier
>>> bank = PAClassifier.make_bank(PAClassifier())
>>> rows = np.array([bank.add(), bank.add()])
>>> bank.columns(["a", "b"]).tolist()
[0, 1]
>>> X = np.array([[1.0, 2.0], [-1.0, 0.5]])
>>> bank.learn(rows, X, [True, False])
[None, None]
>>> bank.learn(rows, -X, [False, True])
[None, None]
>>> bank.predict(rows, X).labels
[True, False]
>>> bank.get(int(rows[0])).predict_one({"a": 1.0, "b": 2.0})
True

"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from oml.bank import Bank, BankPrediction, all_distinct
from oml.learner import (
    InvalidInput,
    Label,
    ModelState,
    TooManyClasses,
    check_label,
    check_target,
    label_sort_key,
)
from oml_algorithms._core import (
    _NUMBERS,
    NP,
    TINY,
    LinearModel,
    halves,
    label_key,
    plain,
    probit_many,
    rival_proba_many,
    sigmoid_many,
    softmax_many,
)
from oml_algorithms.pa import tau
from oml_algorithms.scw import scw_alpha, scw_beta, split_sigma

Kind = tuple[int, str]  # (number of column axes, initial value: "zero", "a" or "aI")


class Arrays:
    """Named arrays shaped (slots, [classes,] columns...), each column as if never seen until
    written.  ``kinds`` gives each array its number of column axes and initial value."""

    def __init__(self, kinds: dict[str, Kind], a: float, classed: bool) -> None:
        self.kinds = dict(kinds)
        self.a = a
        self.classed = classed
        self.slots = 0
        self.k = 0
        self.cols = 0
        self.data = {name: self.blank(name, 0) for name in self.kinds}

    def blank(self, name: str, slots: int, k: int | None = None) -> np.ndarray:
        n_col, init = self.kinds[name]
        lead = (self.k if k is None else k,) if self.classed else ()
        arr = np.zeros((slots, *lead) + (self.cols,) * n_col)
        if init == "a":
            arr.fill(self.a)
        elif init == "aI":
            i = np.arange(self.cols)
            arr[..., i, i] = self.a
        return arr

    def resize(self, slots: int | None = None, cols: int | None = None) -> None:
        old_slots, old_cols = self.slots, self.cols
        self.slots = old_slots if slots is None else slots
        self.cols = old_cols if cols is None else cols
        for name, old in self.data.items():
            new = self.blank(name, self.slots)
            n_col = self.kinds[name][0]
            block = (slice(0, old_slots),) + (slice(None),) * self.classed
            new[block + (slice(0, old_cols),) * n_col] = old
            self.data[name] = new

    def reset(self, slot: int) -> None:
        for name, arr in self.data.items():
            arr[slot] = self.blank(name, 1)[0]

    def insert_class(self, pos: int) -> None:
        for name, arr in self.data.items():
            fresh = self.blank(name, self.slots, k=1)
            self.data[name] = np.concatenate([arr[:, :pos], fresh, arr[:, pos:]], axis=1)
        self.k += 1

    def to_diagonal(self, name: str) -> None:
        self.data[name] = np.diagonal(self.data[name], axis1=-2, axis2=-1).copy()
        self.kinds[name] = (1, "a")

    def get(self, name: str, lead: tuple, width: int) -> Any:
        """The block of one slot (and class) over the first ``width`` columns."""
        return self.data[name][lead + (slice(0, width),) * self.kinds[name][0]]

    def set(self, name: str, lead: tuple, width: int, value: Any) -> None:
        self.data[name][lead + (slice(0, width),) * self.kinds[name][0]] = value

    def put(self, name: str, lead: tuple, cols: np.ndarray, value: Any) -> None:
        """Write ``value`` (one model's block) into the given columns of one slot (and class)."""
        n_col = self.kinds[name][0]
        if n_col == 2:
            self.data[name][lead + np.ix_(cols, cols)] = value
        else:
            self.data[name][lead + (cols,) * n_col] = value


class LinearBank(Bank):
    """Rows, columns and the state round trip, shared by the three banks."""

    def __init__(self, template: Any) -> None:
        super().__init__(template)
        self.proto: Any = template.clone()  # a fresh model with the bank's parameters
        self.model_class: type[LinearModel] = type(template)
        self.params = {k: plain(v) for k, v in self.proto._get_params().items()}
        self.state_names = tuple(self.proto._array_shapes())
        self.n_bias: int = self.proto._n_bias
        self.rows = Arrays(self._kinds(), float(getattr(self.proto, "a", 1.0)), classed=False)
        self._updates = np.zeros(0, np.int64)
        self._live = np.zeros(0, bool)
        self._free: list[int] = []
        self._used = 0
        self._grow(0)

    def _kinds(self) -> dict[str, Kind]:
        return {"w": (1, "zero"), "b": (0, "zero")}

    def _stores(self) -> list[Arrays]:
        return [self.rows]

    @property
    def width(self) -> int:
        """Active columns, the bias column included."""
        return self.n_bias + len(self.features)

    # ---- columns and rows -------------------------------------------------------------------

    def _grow(self, n_features: int) -> None:
        need = self.n_bias + n_features
        if need > self.rows.cols:
            cols = max(need, 2 * self.rows.cols, 8)
            for store in self._stores():
                store.resize(cols=cols)

    def _new_row(self) -> int:
        if self._free:
            row = self._free.pop()
        else:
            row = self._used
            self._used += 1
            if row >= self.rows.slots:
                self._grow_rows(max(16, 2 * self.rows.slots))
        self.rows.reset(row)
        self._live[row] = True
        self._updates[row] = 0
        return row

    def _grow_rows(self, cap: int) -> None:
        self.rows.resize(slots=cap)
        self._updates = _extend(self._updates, cap, 0)
        self._live = _extend(self._live, cap, False)

    def _check_row(self, row: int) -> None:
        if not (0 <= row < self._used and self._live[row]):
            raise KeyError(f"no model in row {row}")

    def remove(self, row: int) -> None:
        self._check_row(row)
        self._live[row] = False
        self._free.append(row)

    def n_updates(self, rows: np.ndarray) -> np.ndarray:
        return self._updates[np.asarray(rows, dtype=np.intp)].copy()

    def _wave(self, rows: Any, X: Any, learn: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Checked rows and X with the bias column in front (when the bias is a feature).
        Predictions may name a row many times; updates name each row at most once."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        X = np.asarray(X, dtype=np.float64)
        if X.shape != (len(rows), len(self.features)):
            raise ValueError(
                f"X must have shape {(len(rows), len(self.features))} (rows, bank features), "
                f"got {X.shape}"
            )
        n = len(rows)
        if n and not (rows.min() >= 0 and rows.max() < self._used and self._live[rows].all()):
            raise ValueError("a row of the wave holds no model")
        if learn and n > 1 and not all_distinct(rows):
            raise ValueError("a wave holds at most one event per row")
        if self.n_bias:
            X = np.concatenate([np.ones((len(rows), 1)), X], axis=1)
        return rows, np.ascontiguousarray(X)

    @staticmethod
    def _refuse_features(
        X: np.ndarray, xs: Sequence[Mapping] | None
    ) -> tuple[np.ndarray, list[InvalidInput | None]]:
        """Events whose features a model would refuse: non-finite values, or an empty dict."""
        ok = np.isfinite(X).all(axis=1)
        errors: list[InvalidInput | None] = [None] * len(X)
        if not ok.all():
            for i in np.flatnonzero(~ok).tolist():
                errors[i] = InvalidInput("a feature value is not finite", "not_finite")
        if xs is not None:
            empty = ok & ~np.fromiter(map(bool, xs), bool, len(X))
            for i in np.flatnonzero(empty).tolist():
                errors[i] = InvalidInput("the feature set is empty", "empty_features")
            ok &= ~empty
        return ok, errors

    # ---- models in and out ------------------------------------------------------------------

    def add(self, model: Any = None) -> int:
        if model is None:  # a fresh model: the template's state, exported once
            state = self.__dict__.get("_blank")
            if state is None:
                state = self._blank = self.proto.clone().export_state()
            return self._add_state(state)
        if type(model) is not self.model_class:
            raise TypeError(
                f"this bank holds {self.model_class.__name__}, not {type(model).__name__}"
            )
        state = model.export_state()
        if state.params != self.params:
            raise ValueError(f"model params {state.params} differ from the bank's {self.params}")
        return self._add_state(state)

    def _add_state(self, state: ModelState) -> int:
        cols = self.columns(state.features)
        cols = np.concatenate([np.arange(self.n_bias), self.n_bias + cols]).astype(np.intp)
        arrays = {name: self._fit(name, a) for name, a in state.arrays.items()}
        row = self._new_row()
        self._load(row, state, arrays, cols)
        self._updates[row] = state.n_updates
        return row

    def _fit(self, name: str, a: np.ndarray) -> np.ndarray:
        """A state array in the bank's covariance form (a full Σ becomes its diagonal when the
        bank, being wider, has gone diagonal; as the model would if given these columns)."""
        if a.ndim - 1 > self.rows.kinds[name][0]:
            return np.diagonal(a, axis1=-2, axis2=-1)
        return a

    def _load(self, row: int, state: ModelState, arrays: dict, cols: np.ndarray) -> None:
        for name, a in arrays.items():
            self.rows.put(name, (row,), cols, a[0])

    def get(self, row: int) -> Any:
        return self.model_class.import_state(self.export(row))

    def export(self, row: int) -> ModelState:
        """The state of the model in ``row``, as ``get(row).export_state()`` gives it."""
        self._check_row(row)
        labels, arrays = self._row_state(row, self.width)
        return ModelState(
            algorithm=self.model_class.algorithm,
            version=self.model_class.state_version,
            params=dict(self.params),
            features=list(self.features),
            labels=labels,
            arrays=arrays,
            n_updates=int(self._updates[row]),
        )

    def _row_state(self, row: int, width: int) -> tuple[list[Label], dict[str, np.ndarray]]:
        arrays = {n: np.array(self.rows.get(n, (row,), width))[None] for n in self.state_names}
        return [], arrays


def _extend(a: np.ndarray, cap: int, fill: Any) -> np.ndarray:
    out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out


# ------------------------------------------------------------------------------------------------


class ClassifierBank(LinearBank):
    """Label bookkeeping and the wave loop shared by the PA and SCW classifier banks.

    Subclasses provide the arithmetic: ``_binary_scores``, ``_learn_binary``, ``_binary_proba``
    and their multiclass twins, and ``odd`` (which arrays change sign when a binary model is
    flipped, as opposed to covariances, which do not).
    """

    odd: dict[str, bool] = {}

    def __init__(self, template: Any) -> None:
        self.classes: list[Label] = []
        self._gid: dict[tuple[bool, Label], int] = {}
        self._gfast: dict[tuple[type, Any], int] = {}
        self._nlab = np.zeros(0, np.int64)
        self._neg = np.zeros(0, np.intp)
        self._pos = np.zeros(0, np.intp)
        self._slot = np.zeros(0, np.intp)
        self._known = np.zeros((0, 0), bool)
        self._slot_free: list[int] = []
        self._slots_used = 0
        self.multi = Arrays(self._kinds(), float(getattr(template, "a", 1.0)), classed=True)
        super().__init__(template)

    def _stores(self) -> list[Arrays]:
        return [self.rows, self.multi]

    def _grow_rows(self, cap: int) -> None:
        super()._grow_rows(cap)
        self._nlab = _extend(self._nlab, cap, 0)
        self._neg = _extend(self._neg, cap, -1)
        self._pos = _extend(self._pos, cap, -1)
        self._slot = _extend(self._slot, cap, -1)

    def _new_row(self) -> int:
        row = super()._new_row()
        self._nlab[row] = 0
        self._neg[row] = self._pos[row] = self._slot[row] = -1
        return row

    def remove(self, row: int) -> None:
        super().remove(row)
        if self._slot[row] >= 0:
            self._slot_free.append(int(self._slot[row]))
            self._slot[row] = -1

    def _new_slot(self) -> int:
        if self._slot_free:
            slot = self._slot_free.pop()
        else:
            slot = self._slots_used
            self._slots_used += 1
            if slot >= self.multi.slots:
                cap = max(4, 2 * self.multi.slots)
                self.multi.resize(slots=cap)
                self._known = _extend(self._known, cap, False)
        self.multi.reset(slot)
        self._known[slot] = False
        return slot

    # ---- classes ----------------------------------------------------------------------------

    def _insert_class(self, label: Label) -> None:
        """Add a class to the union (no row knows it yet); later classes shift by one."""
        keys = [label_sort_key(c) for c in self.classes]
        pos = bisect.bisect(keys, label_sort_key(label))
        self.classes.insert(pos, label)
        self._gid = {label_key(c): i for i, c in enumerate(self.classes)}
        self._gfast = {(type(c), c): i for i, c in enumerate(self.classes)}
        for ids in (self._neg, self._pos):
            ids[ids >= pos] += 1
        self.multi.insert_class(pos)
        self._known = np.insert(self._known, pos, False, axis=1)

    def _class_ids(
        self, rows: np.ndarray, y: Sequence[Any], ok: np.ndarray, errors: list
    ) -> np.ndarray:
        """The union class of each label, adding new classes; a bad label refuses its event,
        and so does a new one for a row that has ``max_classes`` already (before the union
        grows)."""
        ids = self._fast_ids(y)
        miss = np.flatnonzero((ids < 0) & ok).tolist()
        if not miss:
            return ids
        checked = {}
        for i in miss:
            try:
                label = check_label(y[i])
                if label_key(label) not in self._gid:
                    self._check_room(int(rows[i]), label)
                checked[i] = label
            except InvalidInput as exc:
                errors[i] = exc
                ok[i] = False
        for label in checked.values():
            if label_key(label) not in self._gid:
                self._insert_class(label)
        ids = self._fast_ids(y)
        for i, label in checked.items():
            ids[i] = self._gid[label_key(label)]
            self._gfast[(type(y[i]), y[i])] = int(ids[i])  # e.g. 1.0 for the class 1
        return ids

    def _check_room(self, row: int, label: Label) -> None:
        """Raise :class:`TooManyClasses` if ``row`` may not learn one more class."""
        bound = self.max_classes
        if bound is not None and self._nlab[row] >= bound:
            raise TooManyClasses(label, bound)

    def _fast_ids(self, y: Sequence[Any]) -> np.ndarray:
        get = self._gfast.get
        try:
            return np.fromiter(map(get, zip(map(type, y), y, strict=True), repeat(-1)), np.intp)
        except TypeError:  # an unhashable label somewhere
            return np.array([-1 if not _hashable(v) else get((type(v), v), -1) for v in y])

    def _row_add(self, row: int, g: int) -> None:
        """Row ``row`` meets class ``g``: as the single model's ``_add_label``."""
        n = self._nlab[row]
        width = self.width
        if n == 0:
            self._neg[row] = g
        elif n == 1:
            old = self._neg[row]
            if g < old:  # the known class becomes the positive one
                for name, odd in self.odd.items():
                    if odd:
                        self.rows.set(name, (row,), width, 0.0 - self.rows.get(name, (row,), width))
                self._neg[row], self._pos[row] = g, old
            else:
                self._pos[row] = g
        elif n == 2:
            slot = self._new_slot()
            neg, pos = int(self._neg[row]), int(self._pos[row])
            for name, (lo, hi) in self._split(row, width).items():
                self.multi.set(name, (slot, neg), width, lo)
                self.multi.set(name, (slot, pos), width, hi)
            self._known[slot, [neg, pos, g]] = True
            self._slot[row] = slot
        else:
            self._known[self._slot[row], g] = True
        self._nlab[row] = n + 1

    def _split(self, row: int, width: int) -> dict[str, tuple[Any, Any]]:
        """A binary row's parameters as its (negative, positive) class rows (``_promote``)."""
        return {
            name: halves(self.rows.get(name, (row,), width), odd) for name, odd in self.odd.items()
        }

    # ---- the wave ---------------------------------------------------------------------------

    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        rows, X = self._wave(rows, X)
        n, K = len(rows), len(self.classes)
        proba = np.zeros((n, K))
        nlab = self._nlab[rows]
        lookup: list[Any] = [*self.classes, None]
        if (nlab == 2).all():  # the common case: binary rows that know both their classes
            f = self._binary_scores(rows, X)
            p = self._binary_proba(rows, X, f)
            neg, pos = self._neg[rows], self._pos[rows]
            every = np.arange(n)
            proba[every, pos] = p
            proba[every, neg] = 1.0 - p
            labels = list(map(lookup.__getitem__, np.where(f > 0.0, pos, neg).tolist()))
            known = None
            if K > 2:  # rows that know different pairs of classes
                known = np.zeros((n, K), bool)
                known[every, pos] = known[every, neg] = True
            return BankPrediction(
                labels=labels, classes=list(self.classes), proba=proba, score=f, known=known
            )

        pred = np.full(n, -1, dtype=np.intp)
        score = np.full(n, np.nan)
        slot = self._slot[rows]
        i = np.flatnonzero(nlab == 1)
        pred[i] = self._neg[rows[i]]
        proba[i, pred[i]] = 1.0

        i = np.flatnonzero((nlab == 2) & (slot < 0))
        if len(i):
            r = rows[i]
            f = self._binary_scores(r, X[i])
            p = self._binary_proba(r, X[i], f)
            neg, pos = self._neg[r], self._pos[r]
            pred[i] = np.where(f > 0.0, pos, neg)
            proba[i, pos] = p
            proba[i, neg] = 1.0 - p
            score[i] = f

        i = np.flatnonzero(slot >= 0)
        if len(i):
            s = slot[i]
            known = self._known[s]
            scores = self._multi_scores(s, X[i])
            pred[i] = np.where(known, scores, -np.inf).argmax(axis=1)
            proba[i] = self._multi_proba(s, X[i], scores, known)

        labels = list(map(lookup.__getitem__, pred.tolist()))
        known = self._known_classes(rows, nlab, slot)
        return BankPrediction(
            labels=labels, classes=list(self.classes), proba=proba, score=score, known=known
        )

    def _known_classes(self, rows: np.ndarray, nlab: np.ndarray, slot: np.ndarray) -> Any:
        """The classes each row knows (:attr:`BankPrediction.known`), None if all know all."""
        n, K = len(rows), len(self.classes)
        known = np.zeros((n, K), bool)
        m = slot >= 0
        known[m] = self._known[slot[m]]
        for count, ids in ((1, self._neg), (2, self._pos)):
            i = np.flatnonzero(~m & (nlab >= count))
            known[i, ids[rows[i]]] = True
        return None if known.all() else known

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        rows, X = self._wave(rows, X, learn=True)
        if len(y) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(y)} labels")
        ok, errors = self._refuse_features(X, xs)
        ids = self._class_ids(rows, y, ok, errors)

        if (self._nlab[rows] == 2).all():  # the common case: binary rows, known labels
            neg, pos = self._neg[rows], self._pos[rows]
            is_pos = ids == pos
            if (ok & (is_pos | (ids == neg))).all():
                changed = self._learn_binary(rows, X, np.where(is_pos, 1.0, -1.0))
                self._updates[rows[changed]] += 1
                return errors

        i = np.flatnonzero(ok)
        r, g = rows[i], ids[i]
        slot = self._slot[r]
        knows = np.where(slot < 0, (g == self._neg[r]) | (g == self._pos[r]), False)
        m = slot >= 0
        knows[m] = self._known[slot[m], g[m]]
        refused = []
        for j in np.flatnonzero(~knows).tolist():
            try:
                self._check_room(int(r[j]), self.classes[g[j]])
            except TooManyClasses as exc:
                errors[i[j]] = exc
                refused.append(j)
                continue
            self._row_add(int(r[j]), int(g[j]))
        if refused:
            i = np.delete(i, refused)
            r, g = rows[i], ids[i]

        slot = self._slot[r]
        b, m = i[slot < 0], i[slot >= 0]
        if len(b):
            rb = rows[b]
            y_pm = np.where(ids[b] == self._pos[rb], 1.0, -1.0)
            self._updates[rb[self._learn_binary(rb, X[b], y_pm)]] += 1
        if len(m):
            rm = rows[m]
            self._updates[rm[self._learn_multi(self._slot[rm], X[m], ids[m])]] += 1
        return errors

    def _rival(self, slots: np.ndarray, scores: np.ndarray, r: np.ndarray) -> np.ndarray:
        """The best-scoring known class other than ``r`` (the lowest on a tie)."""
        masked = np.where(self._known[slots], scores, -np.inf)
        masked[np.arange(len(r)), r] = -np.inf
        return masked.argmax(axis=1)

    # ---- the state round trip ---------------------------------------------------------------

    def _load(self, row: int, state: ModelState, arrays: dict, cols: np.ndarray) -> None:
        for label in state.labels:
            if label_key(label) not in self._gid:
                self._insert_class(label)
        ids = [self._gid[label_key(c)] for c in state.labels]
        self._nlab[row] = len(ids)
        if len(ids) <= 2:
            super()._load(row, state, arrays, cols)
            self._neg[row] = ids[0] if ids else -1
            self._pos[row] = ids[1] if len(ids) == 2 else -1
            return
        slot = self._new_slot()
        for name, a in arrays.items():
            for k, g in enumerate(ids):
                self.multi.put(name, (slot, g), cols, a[k])
        self._known[slot, ids] = True
        self._slot[row] = slot

    def _row_state(self, row: int, width: int) -> tuple[list[Label], dict[str, np.ndarray]]:
        slot = self._slot[row]
        if slot < 0:
            pair = [self._neg[row], self._pos[row]][: self._nlab[row]]
            return [self.classes[g] for g in pair], super()._row_state(row, width)[1]
        ids = np.flatnonzero(self._known[slot])
        arrays = {
            name: np.stack([np.array(self.multi.get(name, (slot, g), width)) for g in ids])
            for name in self.state_names
        }
        return [self.classes[g] for g in ids], arrays

    # ---- arithmetic, per algorithm ----------------------------------------------------------

    def _binary_scores(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _binary_proba(self, rows: np.ndarray, X: np.ndarray, f: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _learn_binary(self, rows: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Learn one event per binary row; return the mask of rows that changed."""
        raise NotImplementedError

    def _multi_scores(self, slots: np.ndarray, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _multi_proba(
        self, slots: np.ndarray, X: np.ndarray, scores: np.ndarray, known: np.ndarray
    ) -> np.ndarray:
        raise NotImplementedError

    def _learn_multi(self, slots: np.ndarray, X: np.ndarray, r: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def _finite_steps(ok: np.ndarray, i: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Drop the events whose PA step overflowed (as the single models do)."""
    finite = np.isfinite(t)
    if finite.all():
        return i, t
    ok[i[~finite]] = False
    return i[finite], t[finite]


def _hashable(v: Any) -> bool:
    try:
        hash(v)
    except TypeError:
        return False
    return True


# ------------------------------------------------------------------------------------------------


class PAClassifierBank(ClassifierBank):
    """:class:`~oml_algorithms.pa.PAClassifier` models as rows (see the module docstring)."""

    odd = {"w": True, "b": True}

    def _binary_scores(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        d = self.rows.data
        return np.vecdot(d["w"][rows, : X.shape[1]], X) + d["b"][rows]

    def _binary_proba(self, rows: np.ndarray, X: np.ndarray, f: np.ndarray) -> np.ndarray:
        return sigmoid_many(f)

    def _skip_zero(self, sq: np.ndarray) -> np.ndarray:
        """Where ‖x‖² = 0 leaves nothing to update (PA-II with an intercept still moves b)."""
        if self.proto.mode == 2 and self.proto._intercept:
            return np.zeros(len(sq), bool)
        return sq == 0.0

    def _learn_binary(self, rows: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        p, d = self.proto, self.rows.data
        loss = 1.0 - y * self._binary_scores(rows, X)
        sq = np.vecdot(X, X)
        ok = (loss > 0.0) & ~self._skip_zero(sq)
        i = np.flatnonzero(ok)
        if not len(i):
            return ok
        with np.errstate(over="ignore"):
            t = tau(loss[i], sq[i], p.mode, p.C, NP)
        i, t = _finite_steps(ok, i, t)
        step = t * y[i]
        d["w"][rows[i], : X.shape[1]] += step[:, None] * X[i]
        if p._intercept:
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
        ok = (loss > 0.0) & ~self._skip_zero(sq)
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
        if p._intercept:
            d["b"][slots[i], r[i]] += t
            d["b"][slots[i], s[i]] -= t
        return ok


class SCWBank(ClassifierBank):
    """:class:`~oml_algorithms.scw.SCWClassifier` models as rows (see the module docstring)."""

    odd = {"mu": True, "sigma": False}

    def __init__(self, template: Any) -> None:
        self.full = template.clone()._full
        super().__init__(template)

    def _kinds(self) -> dict[str, Kind]:
        return {"mu": (1, "zero"), "sigma": (2, "aI") if self.full else (1, "a")}

    def _split(self, row: int, width: int) -> dict[str, tuple[Any, Any]]:
        mu = self.rows.get("mu", (row,), width)
        sigma = split_sigma(self.rows.get("sigma", (row,), width), mu, self.rows.a)
        return {"mu": halves(mu, odd=True), "sigma": (sigma, sigma)}

    def _grow(self, n_features: int) -> None:
        super()._grow(n_features)
        if self.full and not self.proto._full_for(n_features):
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
        return sigma / (1.0 + (alpha * self.proto._phi / ru)[:, None] * (sx * X))

    def _alpha(self, m: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        p = self.proto
        with np.errstate(all="ignore"):
            ok = (v > 0.0) & (p._phi * np.sqrt(v) - m > 0.0)
            alpha = scw_alpha(m, v, p.mode, p.C, p._phi, NP)
        return alpha, ok & (alpha > TINY)

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
        ru, beta = scw_beta(alpha, v[i], self.proto._phi, NP)
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
        ru, beta = scw_beta(alpha, v[i], self.proto._phi, NP)
        mu[slots[i], r[i], :D] += alpha[:, None] * sr[i]
        mu[slots[i], s[i], :D] -= alpha[:, None] * ss[i]
        cols: tuple[Any, ...] = (slice(0, D),) * (sig_r.ndim - 1)
        sigma = self.multi.data["sigma"]
        sigma[(slots[i], r[i], *cols)] = self._shrink(sig_r[i], sr[i], Xi, alpha, beta, ru)
        sigma[(slots[i], s[i], *cols)] = self._shrink(sig_s[i], ss[i], Xi, alpha, beta, ru)
        return ok


# ------------------------------------------------------------------------------------------------


class PARegressorBank(LinearBank):
    """:class:`~oml_algorithms.pa.PARegressor` models as rows."""

    def _predict(self, rows: np.ndarray, X: np.ndarray) -> np.ndarray:
        d = self.rows.data
        return np.vecdot(d["w"][rows, : X.shape[1]], X) + d["b"][rows]

    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        rows, X = self._wave(rows, X)
        p = self._predict(rows, X)
        return BankPrediction(labels=p.tolist(), score=p)

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        rows, X = self._wave(rows, X, learn=True)
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
        skip = np.zeros(len(sq), bool) if p.mode == 2 and p._intercept else sq == 0.0
        ok = (loss > 0.0) & ~skip
        j = np.flatnonzero(ok)
        with np.errstate(over="ignore"):
            step = tau(loss[j], sq[j], p.mode, p.C, NP)
        j, step = _finite_steps(ok, j, step)
        step = np.where(target[j] - pred[j] < 0.0, -step, step)
        d["w"][rows[j], : X.shape[1]] += step[:, None] * X[j]
        if p._intercept:
            d["b"][rows[j]] += step
        self._updates[rows[j]] += 1
        return errors


def _targets(y: Sequence[Any], ok: np.ndarray, errors: list) -> np.ndarray:
    """The targets as floats; a bad one refuses its event (``ok`` and ``errors`` updated)."""
    target = None
    if _NUMBERS.issuperset(map(type, y)):
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
