"""Stages: split a batch so that each stage's work is a few array operations over many keys.

Only learning changes a model, so what must stay in order per key is its feedback.  An event's
*stage* is the number of feedback events of its key before it in the batch.  Stage ``s`` is
processed as: predict for all its unlabeled events (a key may have many: they all see the same
model), then learn from all its feedback (at most one per key, since the next one of that key
is in stage ``s + 1``).  Going stage by stage therefore gives exactly the results of going event
by event, with far fewer, larger array operations.

>>> for unlabeled, feedback in plan_stages(["a", "a", "b", "a", "a"], [0, 0, 1, 1, 0]):
...     print(unlabeled.tolist(), feedback.tolist())
[0, 1] [2, 3]
[4] []
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_stages(
    keys: Sequence[str], is_feedback: Sequence[bool] | np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(unlabeled indices, feedback indices) of each stage, in batch order within each."""
    n = len(keys)
    if n == 0:
        return []
    feedback = np.asarray(is_feedback, dtype=bool)
    stage = np.empty(n, dtype=np.intp)
    learned: dict[str, int] = {}
    get = learned.get
    for i, (key, fb) in enumerate(zip(keys, feedback.tolist(), strict=True)):
        s = get(key, 0)
        stage[i] = s
        if fb:
            learned[key] = s + 1
    depth = int(stage.max()) + 1
    if depth == 1:
        everything = np.arange(n)
        return [(everything[~feedback], everything[feedback])]
    order = np.argsort(stage, kind="stable")
    bounds = np.cumsum(np.bincount(stage, minlength=depth))[:-1]
    out = []
    for part in np.split(order, bounds):
        fb = feedback[part]
        out.append((part[~fb], part[fb]))
    return out
