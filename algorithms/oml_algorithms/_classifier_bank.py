"""The class bookkeeping and the stage loop of the classifier banks (PA and SCW).

Classifier rows may be binary or multiclass and know different classes.  The bank keeps the
union of all classes, in ``label_sort_key`` order; a binary row records which of them are its
negative and positive class, a multiclass row has a slot in a second set of arrays with one
entry per union class and a mask of the classes it knows.  Binary rows (the common case) never
touch the multiclass arrays.  A row meets a new class as the one model does in
:meth:`oml_algorithms._linear.LinearClassifier._add_label`: a binary row flips or becomes
multiclass, a multiclass row gains a fresh class row.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from oml.bank import BankPrediction
from oml.learner import (
    InvalidInput,
    Label,
    ModelState,
    TooManyClasses,
    check_label,
    label_key,
    label_sort_key,
)
from oml_algorithms._bank import Arrays, LinearBank, extend
from oml_algorithms._core import halves


class ClassifierBank(LinearBank):
    """Label bookkeeping and the stage loop shared by the PA and SCW classifier banks.

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
        self._nlab = extend(self._nlab, cap, 0)
        self._neg = extend(self._neg, cap, -1)
        self._pos = extend(self._pos, cap, -1)
        self._slot = extend(self._slot, cap, -1)

    def _new_row(self) -> int:
        row = super()._new_row()
        self._nlab[row] = 0
        self._neg[row] = self._pos[row] = self._slot[row] = -1
        return row

    def _new_rows(self, n: int) -> np.ndarray:
        rows = super()._new_rows(n)
        self._nlab[rows] = 0
        self._neg[rows] = self._pos[rows] = self._slot[rows] = -1
        return rows

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
                self._known = extend(self._known, cap, False)
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

    # ---- the stage --------------------------------------------------------------------------

    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        rows, X = self._stage(rows, X)
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
        rows, X = self._stage(rows, X, learn=True)
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

    def _stacks(self, labels: list[Label]) -> bool:
        return len(labels) <= 2

    def _loaded(self, rows: np.ndarray, shared: ModelState) -> None:
        for label in shared.labels:
            if label_key(label) not in self._gid:
                self._insert_class(label)
        ids = [self._gid[label_key(c)] for c in shared.labels]
        self._nlab[rows] = len(ids)
        self._neg[rows] = ids[0] if ids else -1
        self._pos[rows] = ids[1] if len(ids) == 2 else -1

    def _stackable(self, rows: np.ndarray) -> tuple[np.ndarray, list[list[Label]], np.ndarray]:
        """Binary rows (up to two classes, held in :attr:`rows`) stack; multiclass rows not."""
        binary = self._slot[rows] < 0
        stacked = rows[binary]
        classes = self.classes
        labels = [
            [classes[g] for g in pair[:n]]
            for pair, n in zip(
                zip(self._neg[stacked].tolist(), self._pos[stacked].tolist(), strict=True),
                self._nlab[stacked].tolist(), strict=True,
            )
        ]
        return stacked, labels, rows[~binary]

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
