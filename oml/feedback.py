"""Where feedback finds the event it labels: earlier in the same batch, or in the feature cache.

:func:`pair_in_batch` decides whether a batch's feedback may be paired with its events inside
the batch (it gives exactly the results of caching when it is used).  What a stage's feedback
found, from either place, is a :class:`Found` (:class:`InBatch` or :class:`InCache`), and
:meth:`oml.processing.Processor._learn_feedback` learns from it along one path whatever the
source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress, repeat
from operator import itemgetter, not_
from typing import Any

import numpy as np

from oml.bank import all_distinct
from oml.codecs.events import DecodedBatch
from oml.state.cache import KEY, PREDICTION, FeatureCache

_KEY_OF, _PREDICTION_OF = itemgetter(KEY), itemgetter(PREDICTION)


@dataclass
class Pairs:
    """A batch's in-batch pairing, by batch position: each feedback's unlabeled event (-1:
    none in the batch), which unlabeled events are resolved, and their predictions."""

    partner: np.ndarray
    resolved: np.ndarray
    predicted: np.ndarray


def pair_in_batch(batch: DecodedBatch, rows: np.ndarray, cache: FeatureCache) -> Pairs | None:
    """Each feedback event's unlabeled event earlier in the batch (-1: none there), or None
    when the batch needs the cache for everything.

    Pairing inside the batch gives exactly the results of caching when: no unlabeled event
    id is in the batch twice or in the cache already, and every feedback whose event is in
    the batch comes after it, names its key and is the only feedback for it.  Otherwise
    (re-sent ids, duplicate feedback, mismatched keys: rare) the batch goes through the
    cache as a whole.
    """
    has_label = batch.has_label
    f_idx = np.flatnonzero(has_label)
    if not len(f_idx) or len(f_idx) == len(batch):
        return None
    u_idx = np.flatnonzero(~has_label)
    unlabeled = (~has_label).tolist()
    u_ids = list(compress(batch.event_ids, unlabeled))
    position = dict(zip(u_ids, u_idx.tolist(), strict=True))
    if len(position) < len(u_ids) or not cache.entries.keys().isdisjoint(u_ids):
        return None
    f_ids = list(compress(batch.event_ids, map(not_, unlabeled)))
    partner = np.fromiter(map(position.get, f_ids, repeat(-1)), np.intp, len(f_ids))
    found = partner >= 0
    if found.any():
        u, f = partner[found], f_idx[found]
        if not ((u < f).all() and (rows[u] == rows[f]).all()):
            return None
        if not all_distinct(u):
            return None
    partners = np.full(len(batch), -1, dtype=np.intp)
    partners[f_idx] = partner
    return Pairs(partners, np.zeros(len(batch), dtype=bool), np.empty(len(batch), object))


class Found:
    """What a stage's feedback found of the events it labels, by feedback: the key each event
    was scored for (None: not found), its prediction, and which feedback found its event."""

    scored_for: list[str | None]
    predicted: list[Any]
    hit: np.ndarray | None  # None: every feedback found its event
    odd: bool  # some feedback found no event, or one scored for another key

    @property
    def hits(self) -> int:
        return len(self.predicted) if self.hit is None else int(self.hit.sum())

    def keep(self, keep: np.ndarray) -> None:
        """Keep only the feedback that ``keep`` marks."""
        self.predicted = where(keep, self.predicted)[0]
        if self.hit is not None:
            self.hit = None if self.hit[keep].all() else self.hit[keep]

    def features(self, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The features to learn the feedback ``idx`` (kept so far) with; ``X`` holds the
        batch's own, in the bank's columns."""
        raise NotImplementedError

    def resolve(self, positions: list[int], offsets: np.ndarray) -> None:
        """The events of the feedback at ``positions`` (of those kept) are resolved."""
        raise NotImplementedError


class InBatch(Found):
    """Feedback whose event is earlier in the batch (same key: see :func:`pair_in_batch`)."""

    def __init__(self, pairs: Pairs, partner: np.ndarray, keys: list[str]) -> None:
        self.pairs, self.partner = pairs, partner
        self.scored_for = list(keys)
        self.predicted = pairs.predicted[partner].tolist()
        self.hit, self.odd = None, False

    def keep(self, keep: np.ndarray) -> None:
        super().keep(keep)
        self.partner = self.partner[keep]

    def features(self, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        return X[self.partner]

    def resolve(self, positions: list[int], offsets: np.ndarray) -> None:
        self.pairs.resolved[self.partner[positions]] = True


class InCache(Found):
    """Feedback whose event is looked up in the feature cache."""

    def __init__(self, cache: FeatureCache, ids: list[str], keys: list[str]) -> None:
        self.cache, self.ids = cache, ids
        self.entries: list[Any] = list(map(cache.entries.get, ids))
        entries = self.entries
        if None in entries:
            self.scored_for = [None if e is None else e[KEY] for e in entries]
            self.predicted = [None if e is None else e[PREDICTION] for e in entries]
            self.hit = np.array([e is not None for e in entries], dtype=bool)
        else:
            self.scored_for = list(map(_KEY_OF, entries))
            self.predicted = list(map(_PREDICTION_OF, entries))
            self.hit = None
        self.odd = self.hit is not None or self.scored_for != keys

    def keep(self, keep: np.ndarray) -> None:
        super().keep(keep)
        self.ids, self.entries = where(keep, self.ids, self.entries)

    def features(self, X: np.ndarray, idx: np.ndarray) -> np.ndarray:
        entries, cache, width = self.entries, self.cache, X.shape[1]
        if self.hit is None:
            return cache.features_of(entries, width)
        out = X[idx].copy()  # cache misses learn from the feedback's own features
        found = np.flatnonzero(self.hit).tolist()
        if found:
            out[found] = cache.features_of([entries[j] for j in found], width)
        return out

    def resolve(self, positions: list[int], offsets: np.ndarray) -> None:
        self.cache.drop_many(take(self.ids, positions), offsets.tolist())


def take(values: Sequence[Any], positions: list[int]) -> list[Any]:
    """``[values[i] for i in positions]``, in C."""
    if len(positions) == 1:
        return [values[positions[0]]]
    return list(itemgetter(*positions)(values)) if positions else []


def where(mask: np.ndarray, *columns: list[Any]) -> list[list[Any]]:
    """Each list cut down to the positions where ``mask`` is True."""
    positions = np.flatnonzero(mask).tolist()
    return [take(column, positions) for column in columns]
