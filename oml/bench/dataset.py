"""What a bench data set is, wherever it comes from (a file, a CSV, a generated stream):
:mod:`oml.bench.datasets` finds and checks the files, :mod:`oml.bench.streams` generates the
drift streams."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from oml.learner import Label, label_sort_key

Task = Literal["classification", "regression"]


class DatasetError(Exception):
    """A data set that cannot be found, fetched, verified or parsed; the message says why."""


@dataclass(frozen=True)
class Dataset:
    """Rows as feature dicts (what ``learn_one`` takes) with their targets, in file order."""

    name: str
    features: list[str]
    target: str
    task: Task
    X: list[dict[str, float]]
    y: list[Any]
    source: str = ""
    sha256: str = ""
    stream: bool = False
    """Played in the order given on every pass, never shuffled (the drift streams)."""
    drifts: tuple[int, ...] = ()
    """0-based index of the first event of each new concept, within one pass."""
    restart_is_drift: bool = False
    """The concept at the end differs from the one at the start, so every pass after the first
    begins with a drift."""

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def classes(self) -> list[Label]:
        """The labels present, in the order learners index them (empty for regression)."""
        if self.task != "classification":
            return []
        return sorted(set(self.y), key=label_sort_key)
