"""What the bench compares: registered algorithms, library baselines and a published reference.

A :class:`Contender` is a name for the table and a factory for fresh models with River's
``predict_one`` / ``learn_one`` (/ ``predict_proba_one``) interface.  Registered algorithms come
from the registry by name and parameters; baselines are River's and scikit-learn's
passive-aggressive models behind small adapters:

- River's ``PAClassifier`` is binary with bool targets, so :class:`BinaryLabels` maps the
  positive class (the greater label) to ``True`` and back;
- scikit-learn's ``partial_fit`` needs every class on its first call, so
  :class:`SklearnOnline` is handed the data set's classes (our learners are not).  It uses
  ``SGDClassifier(loss="hinge", penalty=None, learning_rate="pa1", eta0=1.0)``, which is the
  replacement scikit-learn names for ``PassiveAggressiveClassifier`` (deprecated in 1.8, gone in
  1.10) and gives the same results (docs/algorithms.md).

Two more baselines say what a learner must at least reach:

- the class prior (:class:`ClassPrior`): predicts the most frequent class so far, with the
  running class frequencies, Laplace-smoothed, as its probabilities: ``(n_c + 1) / (n + K)``
  over the data set's ``K`` classes (given up front, so it starts uniform).  A learner whose log
  loss is above it would do better by ignoring the features;
- River's ``StandardScaler | LogisticRegression`` (``OneVsRestClassifier`` of it with more
  than two classes; ``StandardScaler | LinearRegression`` for regression), at River's defaults.

And each registered learner is also run behind River's ``StandardScaler`` (:class:`Scaled`,
labelled ``StandardScaler | NAME``), so that a learner on raw features can be read against
itself on standardized ones.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oml.bench.datasets import Dataset
from oml.bench.metrics import positive_class
from oml.learner import Label, label_sort_key, plain

DEFAULT_ALGORITHMS = {"classification": ["pa", "scw"], "regression": ["pa-regressor"]}
CLASS_PRIOR = "class prior"
RIVER_LOGREG = "river StandardScaler | LogisticRegression"


@dataclass
class Contender:
    label: str
    kind: str  # "learner" or "baseline"
    make: Callable[[], Any]
    algorithm: str = ""
    params: dict[str, Any] = field(default_factory=dict)  # as given
    resolved: dict[str, Any] = field(default_factory=dict)  # every constructor parameter
    note: str = ""


# --------------------------------------------------------------------------------------------
# registered algorithms


def parse_value(text: str) -> Any:
    """A parameter value from the command line: a Python literal if it is one, else the string.

    >>> parse_value("0.5"), parse_value("2"), parse_value("True"), parse_value("diagonal")
    (0.5, 2, True, 'diagonal')
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_algorithm(spec: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:k=v,k2=v2``.

    >>> parse_algorithm("scw:eta=0.9,mode=2")
    ('scw', {'eta': 0.9, 'mode': 2})
    """
    name, _, rest = spec.partition(":")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad parameter {item!r} in {spec!r}; expected NAME:key=value,...")
        params[key.strip()] = parse_value(value.strip())
    if not name:
        raise ValueError(f"no algorithm name in {spec!r}")
    return name.strip(), params


def parse_param(spec: str) -> tuple[str, str, Any]:
    """``NAME.key=value`` (a parameter for every learner of algorithm NAME).

    >>> parse_param("scw.C=0.5")
    ('scw', 'C', 0.5)
    """
    target, eq, value = spec.partition("=")
    name, dot, key = target.rpartition(".")
    if not eq or not dot or not name or not key:
        raise ValueError(f"bad --param {spec!r}; expected NAME.key=value, e.g. scw.C=0.5")
    return name, key, parse_value(value)


def describe(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({', '.join(f'{k}={v!r}' for k, v in params.items())})"


def registered(name: str, params: dict[str, Any], registry: Any) -> Contender:
    """A contender for a registered algorithm; a model is built now so bad params fail early."""
    from oml.plugins import parameters

    registry.create(name, params)
    return Contender(
        label=describe(name, params),
        kind="learner",
        make=lambda: registry.create(name, params),
        algorithm=name,
        params=dict(params),
        resolved={**parameters(registry.get(name)), **params},
    )


# --------------------------------------------------------------------------------------------
# adapters


class BinaryLabels:
    """A River binary classifier (bool targets) seen through the data set's two labels."""

    def __init__(self, model: Any, negative: Label, positive: Label) -> None:
        self.model, self.negative, self.positive = model, negative, positive

    def predict_one(self, x: dict) -> Label:
        return self.positive if self.model.predict_one(x) else self.negative

    def predict_proba_one(self, x: dict) -> dict[Label, float]:
        p = self.model.predict_proba_one(x)
        return {self.negative: p.get(False, 0.0), self.positive: p.get(True, 0.0)}

    def learn_one(self, x: dict, y: Label) -> None:
        self.model.learn_one(x, y == self.positive)


class SklearnOnline:
    """A scikit-learn estimator driven one event at a time through ``partial_fit``.

    Before its first ``partial_fit`` it predicts what a zero-weight linear model predicts
    (the first class, or 0.0), as River's models do, instead of raising ``NotFittedError``.
    """

    def __init__(
        self, estimator: Any, features: Sequence[str], classes: Sequence[Label] | None
    ) -> None:
        self.estimator = estimator
        self.features = list(features)
        self.classes = None if classes is None else np.array(list(classes))
        self.fitted = False

    def _row(self, x: dict) -> np.ndarray:
        return np.array([[x.get(f, 0.0) for f in self.features]], dtype=float)

    def predict_one(self, x: dict) -> Any:
        if not self.fitted:  # what the zero-weight model it starts from would say
            return plain(self.classes[0]) if self.classes is not None else 0.0
        pred = self.estimator.predict(self._row(x))[0]
        return plain(pred)

    def learn_one(self, x: dict, y: Any) -> None:
        if self.classes is not None and not self.fitted:
            self.estimator.partial_fit(self._row(x), np.array([y]), self.classes)
        elif self.classes is not None:
            self.estimator.partial_fit(self._row(x), np.array([y]))
        else:
            self.estimator.partial_fit(self._row(x), np.array([y], dtype=float))
        self.fitted = True


class ClassPrior:
    """Running class frequencies, Laplace-smoothed over the given classes; see the module
    docstring.  Predicts the most frequent class so far (ties: the lowest label).

    >>> m = ClassPrior([0, 1])
    >>> m.predict_proba_one({}), m.predict_one({})
    ({0: 0.5, 1: 0.5}, 0)
    >>> for label in (1, 1, 0): m.learn_one({}, label)
    >>> m.predict_proba_one({}), m.predict_one({})
    ({0: 0.4, 1: 0.6}, 1)
    """

    def __init__(self, classes: Sequence[Label]) -> None:
        self.counts = {c: 0 for c in sorted(classes, key=label_sort_key)}
        self.n = 0

    def predict_proba_one(self, x: dict) -> dict[Label, float]:
        k = len(self.counts)
        return {c: (m + 1) / (self.n + k) for c, m in self.counts.items()}

    def predict_one(self, x: dict) -> Label:
        return max(self.counts, key=lambda c: self.counts[c])  # first of the ties: lowest

    def learn_one(self, x: dict, y: Label) -> None:
        if y not in self.counts:  # a label the data set did not list: now a class
            self.counts[y] = 0
        self.counts[y] += 1
        self.n += 1


class Scaled:
    """Any learner behind River's ``StandardScaler``, as ``StandardScaler() | model`` would run
    it (River's ``Pipeline`` takes River estimators only): learning updates the scaler with
    ``x`` first, then teaches the model the scaled ``x``; predicting only transforms."""

    def __init__(self, model: Any) -> None:
        from river import preprocessing

        self.scaler = preprocessing.StandardScaler()
        self.model = model

    def predict_one(self, x: dict) -> Any:
        return self.model.predict_one(self.scaler.transform_one(x))

    def predict_proba_one(self, x: dict) -> dict[Any, float]:
        if not hasattr(self.model, "predict_proba_one"):
            raise NotImplementedError
        return self.model.predict_proba_one(self.scaler.transform_one(x))

    def learn_one(self, x: dict, y: Any) -> None:
        self.scaler.learn_one(x)
        self.model.learn_one(self.scaler.transform_one(x), y)


def scaled(c: Contender) -> Contender:
    """``StandardScaler | <c>``: the same learner behind a scaler."""
    make = c.make
    return Contender(
        label=f"StandardScaler | {c.label}",
        kind=c.kind,
        make=lambda: Scaled(make()),
        algorithm=c.algorithm,
        params=dict(c.params),
        resolved=dict(c.resolved),
        note=c.note,
    )


def class_prior(ds: Dataset) -> Contender:
    classes = ds.classes
    return Contender(
        label=CLASS_PRIOR,
        kind="baseline",
        make=lambda: ClassPrior(classes),
        note="running class frequencies, Laplace-smoothed; given the classes up front",
    )


def river_logreg(ds: Dataset) -> Contender:
    """River's ``StandardScaler | LogisticRegression`` (or its regression / multiclass form)."""
    from river import linear_model, multiclass, preprocessing

    if ds.task == "regression":
        return Contender(
            label="river StandardScaler | LinearRegression",
            kind="baseline",
            make=lambda: preprocessing.StandardScaler() | linear_model.LinearRegression(),
        )
    classes = ds.classes
    if len(classes) == 2:
        negative, positive = classes[0], positive_class(classes)
        return Contender(
            label=RIVER_LOGREG,
            kind="baseline",
            make=lambda: BinaryLabels(
                preprocessing.StandardScaler() | linear_model.LogisticRegression(),
                negative,
                positive,
            ),
        )
    return Contender(
        label="river StandardScaler | OneVsRest(LogisticRegression)",
        kind="baseline",
        make=lambda: preprocessing.StandardScaler()
        | multiclass.OneVsRestClassifier(linear_model.LogisticRegression()),
    )


def river_baseline(ds: Dataset) -> Contender:
    from river import linear_model, multiclass

    if ds.task == "regression":
        return Contender(
            label="river PARegressor",
            kind="baseline",
            make=lambda: linear_model.PARegressor(),
            note="River 0.26 rewrites the target in its eps-insensitive loss (docs/algorithms.md)",
        )
    classes = ds.classes
    if len(classes) == 2:
        negative, positive = classes[0], positive_class(classes)
        return Contender(
            label="river PAClassifier",
            kind="baseline",
            make=lambda: BinaryLabels(linear_model.PAClassifier(), negative, positive),
        )
    return Contender(
        label="river OneVsRest(PAClassifier)",
        kind="baseline",
        make=lambda: multiclass.OneVsRestClassifier(linear_model.PAClassifier()),
    )


def sklearn_baseline(ds: Dataset) -> Contender | None:
    """scikit-learn's PA (as SGD with the ``pa1`` step) if scikit-learn is installed."""
    try:
        from sklearn.linear_model import SGDClassifier, SGDRegressor
    except ImportError:
        return None
    if ds.task == "regression":
        return Contender(
            label="sklearn SGDRegressor(pa1)",
            kind="baseline",
            make=lambda: SklearnOnline(
                SGDRegressor(
                    loss="epsilon_insensitive", epsilon=0.1, penalty=None,
                    learning_rate="pa1", eta0=1.0,
                ),
                ds.features,
                None,
            ),
            note="= PassiveAggressiveRegressor(C=1) via partial_fit",
        )  # fmt: skip
    classes = ds.classes
    return Contender(
        label="sklearn SGDClassifier(pa1)",
        kind="baseline",
        make=lambda: SklearnOnline(
            SGDClassifier(loss="hinge", penalty=None, learning_rate="pa1", eta0=1.0),
            ds.features,
            sorted(classes, key=label_sort_key),
        ),
        note="= PassiveAggressiveClassifier(C=1) via partial_fit; given the classes up front",
    )


def baselines(ds: Dataset) -> list[Contender]:
    """River's PA, scikit-learn's PA (if installed, and not on a drift stream: one
    ``partial_fit`` per event costs it over a millisecond, and it predicts as River's PA does),
    River's scaled logistic (or linear)
    regression and, for classification, the class prior."""
    out = [river_baseline(ds)]
    sk = None if ds.stream else sklearn_baseline(ds)
    if sk is not None:
        out.append(sk)
    out.append(river_logreg(ds))
    if ds.task == "classification":
        out.append(class_prior(ds))
    return out


# --------------------------------------------------------------------------------------------
# published reference figures (quoted, never run)

PUBLISHED_LABEL = "KS-OML talk (published, not run)"

PUBLISHED: dict[str, dict[str, Any]] = {
    "banknote": {
        "label": PUBLISHED_LABEL,
        "accuracy_by_pass": {2: 0.9497, 3: 0.9507},
        "note": "accuracy reported for the talk's second and third runs",
    },
    "iris": {
        "label": PUBLISHED_LABEL,
        "accuracy_by_pass": {None: 1.0},
        "note": "accuracy 1.0 reported; the run is not stated",
    },
}
