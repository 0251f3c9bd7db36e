"""Fixtures for the bench tests: the packaged data folder and a registry of tiny stand-in learners
whose behaviour is known exactly (the bench itself takes any registered algorithm)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from river import linear_model

from oml.bench.datasets import packaged_dir
from oml.learner import InvalidInput, label_sort_key
from oml.plugins import Registry


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The Iris and Banknote copies shipped inside the package."""
    return packaged_dir()


class Majority:
    """Predicts the most frequent label learned so far (ties: the lowest label)."""

    def __init__(self, smoothing: float = 0.0) -> None:
        self.smoothing = smoothing
        self.counts: dict[Any, int] = {}

    def predict_proba_one(self, x: dict) -> dict[Any, float]:
        total = sum(self.counts.values())
        return {c: k / total for c, k in self.counts.items()} if total else {}

    def predict_one(self, x: dict) -> Any:
        if not self.counts:
            return None
        return max(sorted(self.counts, key=label_sort_key), key=lambda c: self.counts[c])

    def learn_one(self, x: dict, y: Any) -> None:
        self.counts[y] = self.counts.get(y, 0) + 1


class Recorder:
    """Records every call, in order, by the event index in feature ``i``; predicts nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def predict_one(self, x: dict) -> Any:
        self.calls.append(("predict", int(x["i"])))
        return None

    def learn_one(self, x: dict, y: Any) -> None:
        self.calls.append(("learn", int(x["i"])))


class Picky(Majority):
    """A Majority that refuses the label "bad", as an oml learner refuses bad input."""

    def learn_one(self, x: dict, y: Any) -> None:
        if y == "bad":
            raise InvalidInput("no", "bad_label")
        super().learn_one(x, y)


class RiverPA:
    """River's PAClassifier for 0/1 labels: a stand-in for the built-in ``pa``."""

    def __init__(self, C: float = 1.0) -> None:
        self.C = C
        self.model = linear_model.PAClassifier(C=C)

    def predict_one(self, x: dict) -> int:
        return int(self.model.predict_one(x))

    def predict_proba_one(self, x: dict) -> dict[int, float]:
        p = self.model.predict_proba_one(x)
        return {0: p[False], 1: p[True]}

    def learn_one(self, x: dict, y: int) -> None:
        self.model.learn_one(x, y == 1)


class Mean:
    """Regression stand-in: predicts the mean of the targets learned so far."""

    def __init__(self) -> None:
        self.n, self.total = 0, 0.0

    def predict_one(self, x: dict) -> float:
        return self.total / self.n if self.n else 0.0

    def learn_one(self, x: dict, y: float) -> None:
        self.n += 1
        self.total += y


@pytest.fixture
def registry() -> Registry:
    return Registry(
        classes={
            "majority": Majority,
            "recorder": Recorder,
            "picky": Picky,
            "pa": RiverPA,
            "scw": Majority,
            "pa-regressor": Mean,
        }
    )
