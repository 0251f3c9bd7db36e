"""The bank machinery the built-in learners share: many models as rows of shared numpy arrays.

A bank holds many models of one algorithm and parameter set.  Its parameters are stacked: row
``i`` of ``w`` (or ``mu``, ``sigma``) is model ``i``; capacity doubles as rows are added, and a
column added by :meth:`~oml.bank.Bank.columns` starts, in every row, as if never seen (weight 0,
variance ``a``).  A stage of events is predicted (a row may come up many times) or learned (each
row at most once) with a handful of numpy operations over all its rows.

This module holds what every bank here needs: :class:`Arrays` (the stacked parameters) and
:class:`LinearBank` (rows, columns, checking a stage, the state round trip).  The classifier
banks add the class bookkeeping (:mod:`oml_algorithms._classifier_bank`); each learner's module
(:mod:`oml_algorithms.pa`, :mod:`oml_algorithms.scw`) holds its bank's arithmetic next to the
one-model arithmetic it repeats bit for bit, given the same columns: row-wise ``np.vecdot``
computes exactly what ``a.dot(b)`` computes for one model, the shared formulas (``tau``,
``scw_alpha``, ``scw_beta``) run on arrays, and every other operation happens in the same order.
``tests/algorithms/test_learner_bank.py`` checks it with ``==`` on floats.

A bank reads its learner only through public fields: the parameters, :attr:`n_bias` and the
state the template exports.

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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from oml.bank import Bank, StateBatch, all_distinct
from oml.learner import InvalidInput, Label, ModelState
from oml_algorithms._linear import LinearModel

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

    def reset(self, slot: int | np.ndarray) -> None:
        """Slot(s) back to "never seen"."""
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
        self._blank = self.proto.clone().export_state()  # the state of a fresh row
        self.params = self._blank.params
        self.state_names = tuple(self._blank.arrays)
        self.n_bias: int = self.proto.n_bias
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

    def _new_rows(self, n: int) -> np.ndarray:
        """``n`` rows as :meth:`_new_row` gives them one by one, reset at once."""
        reused = [self._free.pop() for _ in range(min(n, len(self._free)))]
        start, fresh = self._used, n - len(reused)
        if start + fresh > self.rows.slots:
            self._grow_rows(max(16, 2 * self.rows.slots, start + fresh))
        self._used += fresh
        rows = np.array(reused + list(range(start, start + fresh)), dtype=np.intp)
        self.rows.reset(rows)
        self._live[rows] = True
        self._updates[rows] = 0
        return rows

    def _grow_rows(self, cap: int) -> None:
        self.rows.resize(slots=cap)
        self._updates = extend(self._updates, cap, 0)
        self._live = extend(self._live, cap, False)

    def _check_row(self, row: int) -> None:
        if not (0 <= row < self._used and self._live[row]):
            raise KeyError(f"no model in row {row}")

    def remove(self, row: int) -> None:
        self._check_row(row)
        self._live[row] = False
        self._free.append(row)

    def n_updates(self, rows: np.ndarray) -> np.ndarray:
        return self._updates[np.asarray(rows, dtype=np.intp)].copy()

    def _stage(self, rows: Any, X: Any, learn: bool = False) -> tuple[np.ndarray, np.ndarray]:
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
            raise ValueError("a row of the stage holds no model")
        if learn and n > 1 and not all_distinct(rows):
            raise ValueError("a stage holds at most one event per row")
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
            return self._add_state(self._blank)
        if type(model) is not self.model_class:
            raise TypeError(
                f"this bank holds {self.model_class.__name__}, not {type(model).__name__}"
            )
        return self.add_state(model.export_state())

    def add_state(self, state: ModelState) -> int:
        self._check_params(state.params)
        return self._add_state(state)

    def _check_params(self, params: dict[str, Any]) -> None:
        if params != self.params:
            raise ValueError(f"model params {params} differ from the bank's {self.params}")

    def _columns_of(self, features: list[Any]) -> np.ndarray:
        """A state's columns in the bank, the bias columns first."""
        cols = self.columns(features)
        return np.concatenate([np.arange(self.n_bias), self.n_bias + cols]).astype(np.intp)

    def add_states(self, shared: ModelState, arrays: Any, n_updates: np.ndarray) -> np.ndarray:
        """Many models at once: one column lookup, then a scatter per array into the new rows
        (the same rows as :meth:`add_state` gives one at a time)."""
        self._check_params(shared.params)
        if not self._stacks(shared.labels):
            return super().add_states(shared, arrays, n_updates)
        cols = self._columns_of(shared.features)
        rows = self._new_rows(len(n_updates))
        for name, a in arrays.items():
            a = self._fit(name, a[:, 0])
            n_col = self.rows.kinds[name][0]
            # rows along the first axis, the columns along each column axis (np.ix_ for 1 or 2)
            index = np.ix_(rows, *([cols] * n_col)) if n_col else (rows,)
            self.rows.data[name][index] = a
        self._updates[rows] = n_updates
        self._loaded(rows, shared)
        return rows

    def _stacks(self, labels: list[Label]) -> bool:
        """Whether states with these labels are held in :attr:`rows` (here: always)."""
        return True

    def _loaded(self, rows: np.ndarray, shared: ModelState) -> None:
        """After :meth:`add_states` wrote the arrays of ``rows``: the bank's own bookkeeping."""

    def _add_state(self, state: ModelState) -> int:
        cols = self._columns_of(state.features)
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

    def export_batches(self, rows: np.ndarray) -> list[StateBatch]:
        """The rows' states, those held in :attr:`rows` as one stacked batch (a gather per
        array, no state object per row), any others (multiclass rows) one by one."""
        rows = np.asarray(rows, dtype=np.intp).reshape(-1)
        if len(rows) and not (rows.min() >= 0 and rows.max() < self._used
                              and self._live[rows].all()):
            raise KeyError("a row to export holds no model")
        stacked, labels, others = self._stackable(rows)
        out = [StateBatch.of(row, self.export(row)) for row in others.tolist()]
        if len(stacked):
            width = self.width
            shared = ModelState(
                algorithm=self.model_class.algorithm, version=self.model_class.state_version,
                params=dict(self.params), features=list(self.features), labels=[], arrays={},
            )
            arrays = {}
            for name in self.state_names:
                block = (slice(None),) + (slice(0, width),) * self.rows.kinds[name][0]
                arrays[name] = self.rows.data[name][stacked][block][:, None]
            out.append(StateBatch(shared, stacked, labels, arrays, self._updates[stacked].copy()))
        return out

    def _stackable(self, rows: np.ndarray) -> tuple[np.ndarray, list[list[Label]], np.ndarray]:
        """The rows whose state lies in :attr:`rows` (here: all) with their labels, and the
        others."""
        return rows, [[] for _ in range(len(rows))], rows[:0]


def extend(a: np.ndarray, cap: int, fill: Any) -> np.ndarray:
    """``a`` with room for ``cap`` rows, the new ones set to ``fill``."""
    out = np.full((cap, *a.shape[1:]), fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
