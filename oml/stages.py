"""Stages: split a batch so that each stage's work is a few array operations over many keys.

Only learning changes a model, so what must stay in order per key is its feedback.  An event's
*stage* is the number of feedback events of its key before it in the batch.  Stage ``s`` is
processed as: predict for all its unlabeled events (a key may have many: they all see the same
model), then learn from all its feedback (at most one per key, since the next one of that key
is in stage ``s + 1``).  Going stage by stage therefore gives exactly the results of going event
by event, with far fewer, larger array operations.

>>> for unlabeled, feedback in plan_stages([7, 7, 3, 7, 7], [0, 0, 1, 1, 0]):
...     print(unlabeled.tolist(), feedback.tolist())
[0, 1] [2, 3]
[4] []
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def plan_stages(
    keys: Sequence[int] | np.ndarray, is_feedback: Sequence[bool] | np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(unlabeled indices, feedback indices) of each stage, in batch order within each.

    ``keys`` are integer codes of the events' keys (the service passes each key's model row).
    """
    codes = np.asarray(keys, dtype=np.intp)
    n = len(codes)
    if n == 0:
        return []
    feedback = np.asarray(is_feedback, dtype=bool)
    # stage = feedback events of the same key earlier in the batch: a running count per key
    order = np.argsort(codes, kind="stable")
    fb = feedback[order].astype(np.intp)
    before = np.cumsum(fb) - fb  # feedback before each event, over all keys in sorted order
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    lengths = np.diff(np.r_[starts, n])
    stage = np.empty(n, dtype=np.intp)
    stage[order] = before - np.repeat(before[starts], lengths)
    depth = int(stage.max()) + 1
    if depth == 1:
        everything = np.arange(n)
        return [(everything[~feedback], everything[feedback])]
    order = np.argsort(stage, kind="stable")
    bounds = np.cumsum(np.bincount(stage, minlength=depth))[:-1]
    out = []
    for part in np.split(order, bounds):
        fb_part = feedback[part]
        out.append((part[~fb_part], part[fb_part]))
    return out
