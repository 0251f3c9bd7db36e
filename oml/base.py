"""What every oml learner shares: its state record, its errors, and the batch ("bank") contract.

A learner is a River estimator (``learn_one``, ``predict_one``, ``predict_proba_one``) that can
also hand its learned state over as a :class:`ModelState`, a plain record of named numpy arrays
that :mod:`oml.codecs.state` turns into versioned Avro bytes.  The service never touches a
learner's internals: it goes through :meth:`Learner.export_state`, :meth:`Learner.import_state`
and, on its hot loop, a :class:`Bank`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

Label = bool | int | float | str
Scalar = None | bool | int | float | str


class InvalidInput(ValueError):
    """An event the model cannot take (bad features or a label it cannot learn).

    The model is left exactly as it was.  ``reason`` is a short snake_case word that the service
    uses as the dead-letter reason and as a metric label.
    """

    def __init__(self, message: str, reason: str = "invalid_input") -> None:
        super().__init__(message)
        self.reason = reason


class StateError(ValueError):
    """Model state bytes or a state record that cannot be turned back into a model."""


@dataclass(frozen=True, eq=False)
class ModelState:
    """A learner's complete learned state, in a form with an explicit schema.

    ``arrays`` holds float64/int64 numpy arrays; ``features`` names the columns the arrays use,
    in order; ``labels`` is the label set, in class-index order (empty for regressors).
    ``extra`` holds further scalars; keys starting with ``oml.`` are the service's own
    bookkeeping (learned offset, prequential counts) and are removed before a learner's
    ``import_state`` sees the record.
    """

    algorithm: str
    version: int
    params: dict[str, Any]
    features: list[Hashable]
    labels: list[Label]
    arrays: dict[str, np.ndarray]
    n_updates: int = 0
    extra: dict[str, Scalar] = field(default_factory=dict)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ModelState):
            return NotImplemented
        return (
            self.algorithm == other.algorithm
            and self.version == other.version
            and self.params == other.params
            and self.features == other.features
            and self.labels == other.labels
            and self.n_updates == other.n_updates
            and self.extra == other.extra
            and self.arrays.keys() == other.arrays.keys()
            and all(
                a.dtype == other.arrays[k].dtype
                and a.shape == other.arrays[k].shape
                and a.tobytes() == other.arrays[k].tobytes()
                for k, a in self.arrays.items()
            )
        )


class Learner:
    """Mixin for oml learners, next to River's ``base.Classifier`` or ``base.Regressor``.

    Subclasses set ``state_version`` and implement the three state methods.  ``algorithm`` is
    filled in by the registry with the entry-point name the class was loaded under.
    """

    algorithm: ClassVar[str] = ""
    state_version: ClassVar[int] = 1

    @property
    def n_updates(self) -> int:
        """How many times the model's parameters changed."""
        raise NotImplementedError

    def export_state(self) -> ModelState:
        raise NotImplementedError

    @classmethod
    def import_state(cls, state: ModelState) -> Learner:
        """Build a new model from ``state``; raise :class:`StateError` if it does not fit."""
        raise NotImplementedError

    @classmethod
    def make_bank(cls, template: Learner) -> Bank:
        """A bank for many models like ``template``.  Learners with a fast path override this."""
        return LoopBank(template)


# --------------------------------------------------------------------------------------------
# input validation shared by all learners


def check_features(x: Any) -> Mapping[Hashable, float]:
    """Validate a feature dict; raise :class:`InvalidInput` (never half-way) if it is bad."""
    if not isinstance(x, Mapping):
        raise InvalidInput(f"features must be a dict, got {type(x).__name__}", "wrong_type")
    if not x:
        raise InvalidInput("the feature set is empty", "empty_features")
    for name, value in x.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidInput(
                f"feature {name!r} is {type(value).__name__}, not a number", "wrong_type"
            )
        if not math.isfinite(value):
            raise InvalidInput(f"feature {name!r} is {value}", "not_finite")
    return x


def label_sort_key(label: Label) -> tuple[int, Any]:
    """Total order over labels of mixed types: bools, then numbers, then strings.

    Classes are indexed in this order, so a tie between scores goes to the lowest class.
    """
    if isinstance(label, bool | np.bool_):
        return (0, bool(label))
    if isinstance(label, numbers.Real):
        return (1, float(label))
    return (2, str(label))


def check_label(y: Any) -> Label:
    """A label a classifier can take: a bool, an int, a finite float or a string."""
    if isinstance(y, np.generic):
        y = y.item()
    if isinstance(y, bool | int | str):
        return y
    if isinstance(y, float) and math.isfinite(y):
        return y
    raise InvalidInput(f"label {y!r} ({type(y).__name__}) is not a class label", "bad_label")


def check_target(y: Any) -> float:
    """A regression target: a finite number (not a bool)."""
    if isinstance(y, np.generic):
        y = y.item()
    if isinstance(y, bool) or not isinstance(y, numbers.Real) or not math.isfinite(y):
        raise InvalidInput(f"target {y!r} is not a finite number", "bad_label")
    return float(y)


def all_distinct(values: np.ndarray) -> bool:
    """No integer twice (a wave's rows, a batch's positions); sorting beats np.unique's
    hashing at these sizes.

    >>> all_distinct(np.array([3, 1, 2])), all_distinct(np.array([3, 1, 3]))
    (True, False)
    """
    if len(values) <= 64:
        return len(set(values.tolist())) == len(values)
    s = np.sort(values)
    return bool((s[1:] != s[:-1]).all())


# --------------------------------------------------------------------------------------------
# the batch contract


@dataclass
class BankPrediction:
    """Predictions for one wave, in the order of the rows given.

    ``labels``: the predicted label per event (for regressors, the predicted value).
    ``classes`` and ``proba``: for classifiers, the class list and an (n, len(classes)) matrix
    of probabilities (0 for a class that event's model has not seen); None if not available.
    ``score``: the raw decision value per event where the algorithm has one (binary margin or
    regression output), else None.
    """

    labels: list[Any]
    classes: list[Label] | None = None
    proba: np.ndarray | None = None
    score: np.ndarray | None = None


class Bank:
    """Many models of one algorithm and one parameter set, each a row.

    The service keeps one bank for all its keys and works on it a stage at a time: a stage's
    predictions may name a row many times (predicting changes nothing), its updates name each
    row at most once, so both can be done together.  Every bank must give results identical to
    calling ``predict_one`` / ``learn_one`` on each model in turn (for fast banks: given the same
    feature columns).

    ``X`` has one row per event and one column per name in :attr:`features` (zeros where an event
    lacks a feature); ``xs`` are the same events as dicts, for banks that want them.
    """

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

    def remove(self, row: int) -> None:
        raise NotImplementedError

    def get(self, row: int) -> Learner:
        """A standalone copy of the model in ``row``."""
        raise NotImplementedError

    def export(self, row: int) -> ModelState:
        """The state of the model in ``row`` (banks may build it without a model object)."""
        return self.get(row).export_state()

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
        self._free: list[int] = []

    def add(self, model: Learner | None = None) -> int:
        model = model if model is not None else self.template.clone()  # type: ignore[attr-defined]
        if self._free:
            row = self._free.pop()
            self._models[row] = model
        else:
            row = len(self._models)
            self._models.append(model)
        return row

    def remove(self, row: int) -> None:
        self._models[row] = None
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
        for i, p in enumerate(probas):
            for c, value in p.items():
                proba[i, index[c]] = value
        return BankPrediction(labels=labels, classes=classes, proba=proba)

    def learn(
        self, rows: np.ndarray, X: np.ndarray, y: Sequence[Any], xs: Sequence[Mapping] | None = None
    ) -> list[InvalidInput | None]:
        errors: list[InvalidInput | None] = []
        for row, x, target in zip(rows, self._dicts(X, xs), y, strict=True):
            try:
                self._models[row].learn_one(x, target)
                errors.append(None)
            except InvalidInput as exc:
                errors.append(exc)
        return errors
