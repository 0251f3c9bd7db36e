"""Helpers for the learner tests: the packaged CSV datasets and a prequential loop."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from oml.bench.datasets import packaged_dir
from oml.learner import Label


def data_dir() -> Path:
    """The Iris and Banknote copies shipped inside the package."""
    return packaged_dir()


def load_csv(name: str) -> tuple[list[str], np.ndarray, list[Label]]:
    """Feature names, the feature matrix and the targets (the last column) of ``name``.csv.
    Targets that look like integers become ints, others stay strings."""
    with open(data_dir() / f"{name}.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], [r for r in rows[1:] if r]
    X = np.array([[float(v) for v in r[:-1]] for r in body])
    y: list[Label] = [int(r[-1]) if r[-1].lstrip("-").isdigit() else r[-1] for r in body]
    return header[:-1], X, y


def stream(name: str, seed: int = 0) -> tuple[list[dict], list[Label]]:
    """The dataset as dicts, in the order ``np.random.default_rng(seed).permutation(n)``."""
    names, X, y = load_csv(name)
    perm = np.random.default_rng(seed).permutation(len(y))
    return [dict(zip(names, X[i].tolist(), strict=True)) for i in perm], [y[i] for i in perm]


def prequential(model, xs, ys, passes: int = 3) -> list[float]:
    """Accuracy per pass of predict-then-learn over the same order, the model carried over."""
    out = []
    for _ in range(passes):
        hits = 0
        for x, y in zip(xs, ys, strict=True):
            hits += model.predict_one(x) == y
            model.learn_one(x, y)
        out.append(hits / len(ys))
    return out
