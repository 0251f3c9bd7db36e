"""What every oml learner shares: its state record, its errors and its input checks.

A learner is a River estimator (``learn_one``, ``predict_one``, ``predict_proba_one``) that can
also hand its learned state over as a :class:`ModelState`, a plain record of named numpy arrays
that :mod:`oml.codecs.state` turns into versioned Avro bytes.  The service never touches a
learner's internals: it goes through :meth:`Learner.export_state`, :meth:`Learner.import_state`
and, on its hot loop, a bank (:mod:`oml.bank`).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, Mapping
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


class TooManyClasses(InvalidInput):
    """A label that would give a model more classes than the bank allows (``max_classes``).

    The event is refused and the model left as it was; the service dead-letters it with reason
    ``too_many_classes``.  Labels the model already knows are still learned from.
    """

    def __init__(self, label: Label, max_classes: int) -> None:
        shown = repr(label) if len(repr(label)) <= 80 else repr(label)[:77] + "..."
        super().__init__(
            f"label {shown} would be class {max_classes + 1} of a model allowed {max_classes}",
            "too_many_classes",
        )
        self.max_classes = max_classes


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
    def make_bank(cls, template: Learner) -> Any:
        """A bank (:class:`oml.bank.Bank`) for many models like ``template``, or None for the
        generic one-at-a-time :class:`oml.bank.LoopBank`.  Learners with a fast path override
        this; use :func:`oml.bank.bank_for` to get a bank for any learner."""
        return None


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


def label_key(label: Label) -> tuple[bool, Label]:
    """Dict key of a checked label: 1 and 1.0 are one class, True and 1 are two.

    >>> label_key(1) == label_key(1.0), label_key(True) == label_key(1)
    (True, False)
    """
    return (label.__class__ is bool, label)


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else as it is.  (The one place oml
    turns numpy scalars into Python ones: labels, predictions, parameters, digests.)

    >>> plain(np.float64(0.5)), plain(np.bool_(True)), plain("x")
    (0.5, True, 'x')
    """
    return value.item() if isinstance(value, np.generic) else value


def plain_param(value: Any) -> Any:
    """A parameter value as plain data: numpy scalars as Python ones, tuples and lists as lists.

    >>> plain_param((np.int64(1), [np.float64(2.0)]))
    [1, [2.0]]
    """
    if isinstance(value, list | tuple):
        return [plain_param(v) for v in value]
    return plain(value)


def check_label(y: Any) -> Label:
    """A label a classifier can take: a bool, an int, a finite float or a string."""
    y = plain(y)
    if isinstance(y, bool | int | str):
        return y
    if isinstance(y, float) and math.isfinite(y):
        return y
    raise InvalidInput(f"label {y!r} ({type(y).__name__}) is not a class label", "bad_label")


def check_target(y: Any) -> float:
    """A regression target: a finite number (not a bool)."""
    y = plain(y)
    if isinstance(y, bool) or not isinstance(y, numbers.Real) or not math.isfinite(y):
        raise InvalidInput(f"target {y!r} is not a finite number", "bad_label")
    return float(y)
