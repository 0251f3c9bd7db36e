"""The prequential (test-then-train) protocol, as the service applies it to one key.

One fixed order, ``numpy.random.default_rng(seed).permutation(n)``, is replayed ``passes``
times; the model is carried from one pass to the next, and each pass is scored on its own.
Each event is first predicted, then its label is queued; with a label delay of ``K`` the label of
an event is learned only once ``K`` further events have been predicted (``K = 0`` is plain
test-then-train).  The queue runs across pass boundaries, since the passes are one stream, and
what is left in it at the end is learned after the last prediction.  The learner is never told
the classes: it finds them in the labels it is given.

Timing covers the learner calls only: ``predict_one`` of the event plus the ``learn_one`` done
in the same step, each bracketed by ``time.perf_counter_ns``.  ``predict_proba_one`` (for the
log loss) and all bookkeeping fall outside.

>>> class Last:  # predicts the last label it learned
...     y = None
...     def predict_one(self, x): return self.y
...     def learn_one(self, x, y): self.y = y
>>> trace = prequential(Last(), [{}] * 4, ["a", "b", "c", "d"], order=[0, 1, 2, 3], delay=1)
>>> trace.y_pred
[None, None, 'a', 'b']
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from oml.learner import InvalidInput


def shuffle_order(n: int, seed: int) -> np.ndarray:
    """The one fixed event order every learner sees.

    >>> shuffle_order(1372, 0)[:8].tolist()
    [118, 893, 582, 237, 198, 1123, 454, 1054]
    """
    return np.random.default_rng(seed).permutation(n)


@dataclass
class Trace:
    """What happened, event by event, over all passes (``passes * n`` entries)."""

    n: int
    passes: int
    order: np.ndarray
    y_true: list[Any] = field(default_factory=list)
    y_pred: list[Any] = field(default_factory=list)
    proba: list[dict[Any, float] | None] | None = None
    step_ns: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    refused: int = 0

    def pass_slice(self, p: int) -> slice:
        """Entries of pass ``p`` (0-based)."""
        return slice(p * self.n, (p + 1) * self.n)


def prequential(
    model: Any,
    X: Sequence[dict[str, float]],
    y: Sequence[Any],
    *,
    order: Sequence[int] | np.ndarray,
    passes: int = 1,
    delay: int = 0,
    proba: bool = True,
    progress: Callable[[int], Any] | None = None,
    progress_every: int = 500,
) -> Trace:
    """Run ``model`` over ``X, y`` in ``order``, ``passes`` times; see the module docstring.

    ``proba``: also ask ``predict_proba_one`` (turned off by itself if the model raises
    ``NotImplementedError``).  ``progress(k)`` is called with the number of events done since
    the previous call, every ``progress_every`` events.  A label the model refuses with
    :class:`~oml.learner.InvalidInput` is counted in ``refused``, as the service would
    dead-letter it.
    """
    if passes < 1:
        raise ValueError("passes must be at least 1")
    if delay < 0:
        raise ValueError("the label delay cannot be negative")
    order = np.asarray(order)
    n = len(order)
    total = n * passes
    trace = Trace(n=n, passes=passes, order=order)
    trace.proba = [] if proba and hasattr(model, "predict_proba_one") else None
    step_ns = np.zeros(total, dtype=np.int64)
    pending: deque[tuple[dict[str, float], Any]] = deque()
    clock = time.perf_counter_ns
    y_pred, y_true = trace.y_pred, trace.y_true
    k = since_progress = 0
    for _ in range(passes):
        for i in order.tolist():
            x, target = X[i], y[i]
            t0 = clock()
            pred = model.predict_one(x)
            elapsed = clock() - t0
            if trace.proba is not None:
                try:
                    trace.proba.append(dict(model.predict_proba_one(x)))
                except NotImplementedError:
                    trace.proba = None
            y_pred.append(pred)
            y_true.append(target)
            pending.append((x, target))
            if len(pending) > delay:
                x_old, y_old = pending.popleft()
                t0 = clock()
                try:
                    model.learn_one(x_old, y_old)
                except InvalidInput:
                    trace.refused += 1
                elapsed += clock() - t0
            step_ns[k] = elapsed
            k += 1
            since_progress += 1
            if progress is not None and since_progress >= progress_every:
                progress(since_progress)
                since_progress = 0
    while pending:  # the labels still in flight when the stream ends
        x_old, y_old = pending.popleft()
        try:
            model.learn_one(x_old, y_old)
        except InvalidInput:
            trace.refused += 1
    if progress is not None and since_progress:
        progress(since_progress)
    trace.step_ns = step_ns
    return trace
