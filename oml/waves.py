"""Waves: split a batch so that each wave holds at most one event per key.

Events of different keys touch different models, so a wave's predictions and updates can run
together as a few array operations, while each key still sees its events in order.  Processing
the waves one after another therefore gives exactly the results of processing the batch event
by event.

>>> [w.tolist() for w in plan_waves(["a", "b", "a", "a", "c", "b"])]
[[0, 1, 4], [2, 5], [3]]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_waves(keys: Sequence[str]) -> list[np.ndarray]:
    """Indices of the events in each wave, in batch order within a wave."""
    n = len(keys)
    occurrence = np.empty(n, dtype=np.intp)
    seen: dict[str, int] = {}
    get = seen.get
    for i, key in enumerate(keys):
        k = get(key, 0)
        occurrence[i] = k
        seen[key] = k + 1
    if n == 0:
        return []
    depth = int(occurrence.max()) + 1
    if depth == 1:
        return [np.arange(n)]
    order = np.argsort(occurrence, kind="stable")
    bounds = np.cumsum(np.bincount(occurrence, minlength=depth))[:-1]
    return np.split(order, bounds)
