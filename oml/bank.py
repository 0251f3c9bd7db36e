"""The batch ("bank") contract: many models of one algorithm as rows, worked a stage at a time.

:func:`bank_for` gives any learner its bank: the learner's own fast one if it has one
(:meth:`oml.learner.Learner.make_bank`), else :class:`LoopBank`, which calls the models one at a
time.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oml.learner import (
    InvalidInput,
    Label,
    Learner,
    ModelState,
    TooManyClasses,
    check_label,
    label_key,
    label_sort_key,
)


def bank_for(template: Learner, max_classes: int | None = None) -> Bank:
    """The bank for many models like ``template``: its own fast one, or a :class:`LoopBank`;
    ``max_classes`` bounds the classes of each of its classifiers (:attr:`Bank.max_classes`)."""
    bank = type(template).make_bank(template)
    bank = LoopBank(template) if bank is None else bank
    bank.max_classes = max_classes
    return bank


def all_distinct(values: np.ndarray) -> bool:
    """No integer twice (a stage's rows, a batch's positions); sorting beats np.unique's
    hashing at these sizes.

    >>> all_distinct(np.array([3, 1, 2])), all_distinct(np.array([3, 1, 3]))
    (True, False)
    """
    if len(values) <= 64:
        return len(set(values.tolist())) == len(values)
    s = np.sort(values)
    return bool((s[1:] != s[:-1]).all())


@dataclass
class BankPrediction:
    """Predictions for one stage, in the order of the rows given.

    ``labels``: the predicted label per event (for regressors, the predicted value; None for
    a classifier that knows no class yet).
    ``classes`` and ``proba``: for classifiers, the class list and an (n, len(classes)) matrix
    of probabilities; None if not available.
    ``known``: an (n, len(classes)) mask of the classes each event's own model knows, or None
    when every model knows every class.  An event's probabilities are the entries its mask
    keeps (the others are 0 and are not part of its prediction), so a key's output never
    depends on the classes other keys of the bank have seen: a model that knows no class has
    an empty distribution, one that knows one class gives it 1.0.
    ``score``: the raw decision value per event where the algorithm has one (binary margin or
    regression output), else None.
    """

    labels: list[Any]
    classes: list[Label] | None = None
    proba: np.ndarray | None = None
    score: np.ndarray | None = None
    known: np.ndarray | None = None

    def probas(self) -> list[dict[Label, float]] | None:
        """Each event's class-to-probability mapping, over its own model's classes.

        >>> p = BankPrediction([None, "b"], ["a", "b"], np.array([[0.0, 0.0], [0.0, 1.0]]),
        ...                    known=np.array([[False, False], [False, True]]))
        >>> p.probas()
        [{}, {'b': 1.0}]
        """
        if self.proba is None or self.classes is None:
            return None
        rows = self.proba.tolist()
        if self.known is None:
            return [dict(zip(self.classes, row, strict=True)) for row in rows]
        return [
            {c: v for c, v, k in zip(self.classes, row, mask, strict=True) if k}
            for row, mask in zip(rows, self.known.tolist(), strict=True)
        ]


@dataclass
class StateBatch:
    """The states of several rows of one bank, stacked: what :meth:`Bank.export_batches` gives.

    Every state of a batch has ``shared``'s algorithm, version, params, features and extra;
    ``labels[i]``, ``n_updates[i]`` and ``arrays[name][i]`` are row ``rows[i]``'s own (so the
    rows of one batch have arrays of one shape).  State *i* equals ``bank.export(rows[i])``.
    """

    shared: ModelState
    rows: np.ndarray
    labels: list[list[Label]]
    arrays: dict[str, np.ndarray]
    n_updates: np.ndarray

    @classmethod
    def of(cls, row: int, state: ModelState) -> StateBatch:
        """A batch of one, from its state."""
        return cls(state, np.array([row], np.intp), [list(state.labels)],
                   {name: a[None] for name, a in state.arrays.items()},
                   np.array([state.n_updates], np.int64))

    def state(self, i: int) -> ModelState:
        """State *i* on its own."""
        return ModelState(
            algorithm=self.shared.algorithm, version=self.shared.version,
            params=dict(self.shared.params), features=list(self.shared.features),
            labels=list(self.labels[i]),
            arrays={name: a[i] for name, a in self.arrays.items()},
            n_updates=int(self.n_updates[i]), extra=dict(self.shared.extra),
        )


class Bank:
    """Many models of one algorithm and one parameter set, each a row.

    The service keeps one bank for all its keys and works on it a stage at a time: a stage's
    predictions may name a row many times (predicting changes nothing), its updates name each
    row at most once, so both can be done together.  Every bank must give results identical to
    calling ``predict_one`` / ``learn_one`` on each model in turn (for fast banks: given the same
    feature columns).

    ``X`` has one row per event and one column per name in :attr:`features` (zeros where an event
    lacks a feature); ``xs`` are the same events as dicts, for banks that want them.

    ``max_classes`` (None: no bound) bounds how many classes each classifier row may know:
    :meth:`learn` refuses a label that would be one class too many with
    :class:`~oml.learner.TooManyClasses` (the row unchanged).  A model loaded with more classes
    keeps them, and still learns from them.
    """

    max_classes: int | None = None

    def __init__(self, template: Learner) -> None:
        self.template = template
        self.features: list[Hashable] = []
        self._columns: dict[Hashable, int] = {}

    # feature columns, shared by all rows
    def columns(self, names: Sequence[Hashable]) -> np.ndarray:
        """Column index of each name, adding columns for names never seen before."""
        out = np.empty(len(names), dtype=np.intp)
        for i, name in enumerate(names):
            col = self._columns.get(name)
            if col is None:
                col = self._columns[name] = len(self.features)
                self.features.append(name)
                self._grow(len(self.features))
            out[i] = col
        return out

    def _grow(self, n_features: int) -> None:
        """Make room for ``n_features`` columns (new columns as if never seen)."""

    # rows
    def add(self, model: Learner | None = None) -> int:
        """Add a model (a fresh one from the template if None); return its row."""
        raise NotImplementedError

    def add_state(self, state: ModelState) -> int:
        """Add the model ``state`` describes; return its row.  A fast bank puts the state's
        arrays in the row with no model built; the state must be what a model of the bank's
        algorithm and params exports (the caller has checked it)."""
        return self.add(type(self.template).import_state(state))

    def add_states(self, shared: ModelState, arrays: Mapping[str, np.ndarray],
                   n_updates: np.ndarray) -> np.ndarray:
        """Add many models whose states are ``shared`` but for their arrays (stacked, one row
        per model) and update counts; return their rows.  The same rows as :meth:`add_state`
        one model at a time (here: exactly that)."""
        rows = [
            self.add_state(ModelState(
                algorithm=shared.algorithm, version=shared.version, params=dict(shared.params),
                features=list(shared.features), labels=list(shared.labels),
                arrays={name: a[i] for name, a in arrays.items()}, n_updates=int(n),
                extra=dict(shared.extra),
            ))
            for i, n in enumerate(n_updates.tolist())
        ]
        return np.array(rows, dtype=np.intp)

    def remove(self, row: int) -> None:
        raise NotImplementedError

    def get(self, row: int) -> Learner:
        """A standalone copy of the model in ``row``."""
        raise NotImplementedError

    def export(self, row: int) -> ModelState:
        """The state of the model in ``row`` (banks may build it without a model object)."""
        return self.get(row).export_state()

    def export_batches(self, rows: np.ndarray) -> list[StateBatch]:
        """The states of ``rows``, as few stacked batches as the bank can make (here: one per
        row).  A commit exports every model that learned this way, so a fast bank stacks its
        rows' arrays instead of building one state per row."""
        return [StateBatch.of(row, self.export(row)) for row in rows.tolist()]

    def n_updates(self, rows: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    # the hot loop
    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        raise NotImplementedError

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        """Learn one event per row (rows unique).  Returns, per event, the error that refused it
        (that row's model left unchanged) or None."""
        raise NotImplementedError


class LoopBank(Bank):
    """The bank any learner gets for free: a list of models, called one at a time."""

    def __init__(self, template: Learner) -> None:
        super().__init__(template)
        self._models: list[Any] = []
        self._classes: list[set[tuple[bool, Label]] | None] = []  # per row, for max_classes
        self._free: list[int] = []

    def add(self, model: Learner | None = None) -> int:
        model = model if model is not None else self.template.clone()  # type: ignore[attr-defined]
        try:  # the classes a restored model knows already
            labels = model.export_state().labels
        except NotImplementedError:  # a learner without state export starts from none
            labels = []
        classes = {label_key(c) for c in labels}
        if self._free:
            row = self._free.pop()
            self._models[row] = model
            self._classes[row] = classes
        else:
            row = len(self._models)
            self._models.append(model)
            self._classes.append(classes)
        return row

    def remove(self, row: int) -> None:
        self._models[row] = None
        self._classes[row] = None
        self._free.append(row)

    def get(self, row: int) -> Learner:
        model = self._models[row]
        return type(model).import_state(model.export_state())

    def n_updates(self, rows: np.ndarray) -> np.ndarray:
        return np.array([self._models[r].n_updates for r in rows], dtype=np.int64)

    def _dicts(self, X: np.ndarray, xs: Sequence[Mapping] | None) -> Sequence[Mapping]:
        if xs is not None:
            return xs
        return [dict(zip(self.features, row.tolist(), strict=True)) for row in X]

    def predict(
        self, rows: np.ndarray, X: np.ndarray, xs: Sequence[Mapping] | None = None
    ) -> BankPrediction:
        dicts = self._dicts(X, xs)
        models = [self._models[r] for r in rows]
        labels = [m.predict_one(x) for m, x in zip(models, dicts, strict=True)]
        if not hasattr(self.template, "predict_proba_one"):
            return BankPrediction(labels=labels)
        probas = [m.predict_proba_one(x) for m, x in zip(models, dicts, strict=True)]
        classes = sorted({c for p in probas for c in p}, key=label_sort_key)
        index = {c: j for j, c in enumerate(classes)}
        proba = np.zeros((len(labels), len(classes)))
        known = np.zeros((len(labels), len(classes)), bool)
        for i, p in enumerate(probas):
            for c, value in p.items():
                proba[i, index[c]] = value
                known[i, index[c]] = True
        return BankPrediction(
            labels=labels, classes=classes, proba=proba, known=None if known.all() else known
        )

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        errors: list[InvalidInput | None] = []
        bound = self.max_classes if hasattr(self.template, "predict_proba_one") else None
        for row, x, target in zip(rows, self._dicts(X, xs), y, strict=True):
            try:
                new = None
                if bound is not None:
                    new = label_key(check_label(target))
                    known = self._classes[row]
                    assert known is not None
                    if new in known:
                        new = None
                    elif len(known) >= bound:
                        raise TooManyClasses(target, bound)
                self._models[row].learn_one(x, target)
                if new is not None:
                    self._classes[row].add(new)  # type: ignore[union-attr]
                errors.append(None)
            except InvalidInput as exc:
                errors.append(exc)
        return errors
