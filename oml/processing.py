"""Batch processing: predict-and-cache and retrieve-and-update for one polled batch.

:meth:`Processor.process` decodes the batch into one :class:`InFlight` value (the batch's
columns, each event's model row, its features in the bank's columns, and the in-batch pairing),
then goes stage by stage (:mod:`oml.stages`: a few array operations per stage, and exactly the
results of going event by event): predict for the stage's unlabeled events, then learn from its
feedback and score the predictions that feedback resolves.  The batch's predictions are encoded
and produced at the end.

Feedback finds the event it labels in one of two places (:mod:`oml.feedback`): earlier in the
same batch, when the batch allows pairing there, or in the feature cache.  Either way it is
learned from along one path (:meth:`Processor._learn_feedback`): replayed input is skipped, the
rare cases (a miss, another key) are checked, the labels a model refuses are dead-lettered.

In this module a *row* is always a model's row in the bank (:class:`oml.bank.Bank`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from operator import eq
from typing import Any, NamedTuple

import numpy as np
import structlog
from confluent_kafka import Message, Producer

from oml.bank import BankPrediction, LoopBank
from oml.codecs._util import message_column
from oml.codecs.errors import Reason
from oml.codecs.events import DecodedBatch, EventDecoder
from oml.codecs.outputs import OutputCodecs
from oml.config import TopicsConfig
from oml.feedback import Found, InBatch, InCache, Pairs, pair_in_batch, take, where
from oml.kafka import deadletter
from oml.observability import ServiceMetrics
from oml.stages import plan_stages
from oml.state.cache import FeatureCache
from oml.state.models import ModelStore

log = structlog.get_logger("oml.service")

Pairing = Callable[[DecodedBatch, np.ndarray, FeatureCache], Pairs | None]


class StagePrediction(NamedTuple):
    """The predictions of one stage's unlabeled events."""

    positions: np.ndarray  # the events, by batch position
    prediction: BankPrediction
    n_updates: np.ndarray  # each event's model's update count when it predicted


@dataclass(eq=False)
class InFlight:
    """The batch in flight, as every step sees it.

    ``batch`` holds the decoded columns, their input partitions and offsets; ``rows`` each
    event's model (its row in the bank); ``X`` the events' features in the bank's columns;
    ``pairs`` the in-batch pairing (None: everything goes through the cache); ``predicted`` the
    stages' predictions so far.
    """

    messages: Sequence[Message]
    batch: DecodedBatch
    rows: np.ndarray
    X: np.ndarray
    pairs: Pairs | None
    predicted: list[StagePrediction] = field(default_factory=list)

    @property
    def offsets(self) -> np.ndarray:
        """Each event's input offset."""
        return self.batch.offsets

    def message(self, position: int) -> Message:
        """The message event ``position`` came from."""
        return self.messages[self.batch.index[position]]


class Processor:
    """Processes polled batches into predictions, model updates and dead letters.

    ``producer`` is the run's producer (None outside a run); ``pairing`` finds the feedback
    that pairs with its event inside a batch (None: all feedback goes through the cache, which
    gives the same results; the tests compare the two ways).
    """

    def __init__(
        self,
        models: ModelStore,
        cache: FeatureCache,
        decoder: EventDecoder,
        outputs: OutputCodecs,
        topics: TopicsConfig,
        metrics: ServiceMetrics,
        *,
        algorithm: str,
        is_classifier: bool,
    ) -> None:
        self.models, self.cache = models, cache
        self.decoder, self.outputs = decoder, outputs
        self.topics, self.metrics = topics, metrics
        self.algorithm, self.is_classifier = algorithm, is_classifier
        self.producer: Producer = None  # type: ignore[assignment]
        self.pairing: Pairing | None = pair_in_batch
        self.max_record_bytes = 1_000_000  # the producer's message.max.bytes
        # the predictions topic has the input's partition count: a prediction goes to its
        # event's partition number, whatever partitioner placed the event
        self.copartitioned = False
        self.events = 0  # input messages handled
        self.split_keys: set[str] = set()  # keys said to reach a second partition

    def process(self, messages: Sequence[Message]) -> DecodedBatch:
        """Handle one polled batch: decode it, then predict-and-cache and retrieve-and-update
        stage by stage, then emit the batch's predictions.  Returns the decoded batch.

        Feedback for an unlabeled event of the same batch does not go through the cache when
        the batch allows it (see :func:`pair_in_batch`): its features and prediction are read
        from the batch, and only events still unresolved at the end of the batch are cached.
        """
        started = time.perf_counter()
        batch = self.decoder.decode_messages(messages)
        for bad in batch.errors:
            self.dead_letter(messages[bad.index], bad.reason, bad.message)
        self.events += len(messages)
        n_feedback = int(batch.has_label.sum())
        self.metrics.count_events("unlabeled", len(batch) - n_feedback)
        self.metrics.count_events("feedback", n_feedback)
        if len(batch):
            rows = self.models.rows_for_partitions(batch.partitions.tolist(), batch.keys)
            away = self.models.partition[rows] != batch.partitions
            if away.any():  # rare: a key reaching two input partitions
                self._split_keys(batch, rows, np.flatnonzero(away))
            pairs = None if self.pairing is None else self.pairing(batch, rows, self.cache)
            work = InFlight(messages, batch, rows, batch.matrix(self.models.bank), pairs)
            for unlabeled, labeled in plan_stages(rows, batch.has_label):
                if len(unlabeled):
                    work.predicted.append(self._predict(work, unlabeled))
                if len(labeled):
                    self._retrieve_and_update(work, labeled)
            self._emit_predictions(work)
            self.producer.poll(0)
        self.metrics.batch_latency.observe(time.perf_counter() - started)
        return batch

    # ------------------------------------------------------------------------------- predict
    def _predict(self, work: InFlight, idx: np.ndarray) -> StagePrediction:
        """Predict a stage's unlabeled events; cache them now unless the batch pairs in-batch
        (then :meth:`_emit_predictions` caches what is left unresolved)."""
        batch, bank = work.batch, self.models.bank
        rows, X = work.rows[idx], work.X[idx]
        prediction = bank.predict(rows, X, self._dicts(batch, idx, X))
        n_updates = bank.n_updates(rows)
        if work.pairs is None:
            self._cache(work, idx, X, prediction.labels)
        else:
            work.pairs.predicted[idx] = prediction.labels
        return StagePrediction(idx, prediction, n_updates)

    def _cache(
        self, work: InFlight, idx: np.ndarray, X: np.ndarray, predictions: list[Any]
    ) -> None:
        """Put the events ``idx`` (their features ``X``) in the feature cache."""
        batch, pick = work.batch, idx.tolist()
        self.cache.put_many(
            take(batch.event_ids, pick), take(batch.keys, pick), X, predictions,
            batch.timestamps[idx].tolist(), work.offsets[idx].tolist(),
            batch.partitions[idx].tolist(),
        )

    def _emit_predictions(self, work: InFlight) -> None:
        """Encode and produce the batch's predictions in stage order, a few encoder calls per
        batch (one per run of stages with the same class list); cache the events still
        unresolved when the batch paired in-batch.  Headers that came with a message are
        carried to its event's prediction, as they came."""
        predicted, batch = work.predicted, work.batch
        if not predicted:
            return
        headers = message_column(work.messages, "headers")  # None each, unless sent
        carried = None if headers.count(None) == len(headers) else headers
        now = int(time.time() * 1000)
        produce, topic = self.producer.produce, self.topics.predictions
        every = np.concatenate([s.positions for s in predicted])
        for group in _same_classes(predicted):
            one = len(group) == 1
            idx = group[0].positions if one else np.concatenate([s.positions for s in group])
            first = group[0].prediction
            labels = first.labels if one else [y for s in group for y in s.prediction.labels]
            pick = idx.tolist()
            keys = take(batch.keys, pick)
            values = self.outputs.predictions.encode_batch(
                take(batch.event_ids, pick), keys, labels,
                n_updates=_stack([s.n_updates for s in group]),
                event_timestamps=batch.timestamps[idx], processed_timestamp=now,
                algorithm=self.algorithm, classes=first.classes,
                proba=_stack([s.prediction.proba for s in group]),
                score=_stack([s.prediction.score for s in group]),
                known=_known([s.prediction for s in group]),
            )
            # the event's partition number, or -1: the partitioner's choice (murmur2, by key)
            parts = batch.partitions[idx].tolist() if self.copartitioned else [-1] * len(pick)
            if carried is None:
                for key, value, p in zip(keys, values, parts, strict=True):
                    produce(topic, value, key, partition=p)
            else:
                these = take(carried, batch.index[idx].tolist())
                for key, value, h, p in zip(keys, values, these, parts, strict=True):
                    produce(topic, value, key, headers=h, partition=p)
        self.metrics.predicted.inc(len(every))
        ts = batch.timestamps[every]
        valid = ts[ts >= 0]
        if len(valid):
            self.metrics.event_latency.observe_many((now - valid) / 1000.0)
        pairs = work.pairs
        if pairs is not None:
            left = every[~pairs.resolved[every]]
            if len(left):
                self._cache(work, left, work.X[left], pairs.predicted[left].tolist())

    # ------------------------------------------------------------------- retrieve and update
    def _retrieve_and_update(self, work: InFlight, idx: np.ndarray) -> None:
        """Learn from a stage's feedback (at most one per key), with the features and the
        prediction of the event each one labels: from the batch when it is paired there,
        otherwise from the cache."""
        batch = work.batch
        self.cache.advance(int(batch.timestamps[idx].max()))
        if work.pairs is not None:
            partner = work.pairs.partner[idx]
            inside = partner >= 0
            if inside.any():  # the keys differ, so the two halves may go one after the other
                paired = idx if inside.all() else idx[inside]
                found = InBatch(work.pairs, partner[inside], take(batch.keys, paired.tolist()))
                self._learn_feedback(work, paired, found)
                if inside.all():
                    return
                idx = idx[~inside]
        pick = idx.tolist()
        cached = InCache(self.cache, take(batch.event_ids, pick), take(batch.keys, pick))
        self._learn_feedback(work, idx, cached)

    def _learn_feedback(self, work: InFlight, idx: np.ndarray, found: Found) -> None:
        """Learn from feedback with what it found of its events, whatever the source: the rare
        cases (replayed input, a miss, another key) are checked one by one
        (:meth:`_check_feedback`), then the models learn and the events are resolved."""
        offsets = work.offsets[idx]
        replayed = self._replayed(work, idx, offsets)
        self.metrics.cache_hits.inc(found.hits)
        if replayed.any() or found.odd:
            keep = np.ones(len(idx), dtype=bool)
            for j, i in enumerate(idx.tolist()):
                keep[j] = self._check_feedback(work, i, found, j, bool(replayed[j]), offsets)
            if not keep.all():
                idx, offsets = idx[keep], offsets[keep]
                found.keep(keep)
            if not len(idx):
                return
        ok = self._learn(work, idx, found.features(work.X, idx), offsets, found.predicted,
                         found.hit)
        if ok is None:
            found.resolve(list(range(len(idx))), offsets)
        else:
            found.resolve(np.flatnonzero(ok).tolist(), offsets[ok])

    def _split_keys(self, batch: DecodedBatch, rows: np.ndarray, away: np.ndarray) -> None:
        """Say so, once per key, when a key's events reach a second input partition: it
        usually means a producer with another partitioner (not murmur2), or a Kafka key that
        differs from the body's ``key``.  The key keeps one model, in its first partition."""
        for i in away.tolist():
            key = batch.keys[i]
            if key in self.split_keys:
                continue
            self.split_keys.add(key)
            self.metrics.split_keys.inc()
            log.warning(
                "key_on_two_partitions", key=key, partition=int(batch.partitions[i]),
                model_partition=int(self.models.partition[rows[i]]),
                hint="check that every producer keys by the event's key with murmur2 "
                     "(Java's default partitioner)",
            )

    def _replayed(self, work: InFlight, idx: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """Which feedback is replayed input whose update is in the model state already: at or
        before its model's learned-offset mark.  The mark counts offsets of the model's own
        partition only; a key that also reaches another partition (a second producer with
        another partitioner, or a Kafka key that differs from the body's key) is never taken
        for a replay there, and its updates there do not move the mark."""
        rows = work.rows[idx]
        models = self.models
        return (offsets <= models.learned_offset[rows]) & (
            models.partition[rows] == work.batch.partitions[idx])

    def _check_feedback(
        self, work: InFlight, i: int, found: Found, j: int, replayed: bool, offsets: np.ndarray
    ) -> bool:
        """The rare cases of feedback event ``i`` (``j``-th of the stage's feedback); True if it
        is to be learned from."""
        batch = work.batch
        event_id, scored_for = batch.event_ids[i], found.scored_for[j]
        if scored_for is not None and scored_for != batch.keys[i]:
            self.dead_letter(
                work.message(i), Reason.KEY_MISMATCH,
                f"event {event_id!r} was scored for key {scored_for!r}, "
                f"its feedback names key {batch.keys[i]!r}",
            )
            return False
        if replayed:  # replayed input whose update is in the state already
            self.metrics.duplicates.inc()
            found.resolve([j], offsets[j : j + 1])
            return False
        if scored_for is None:
            self.metrics.cache_misses.inc()
            if not batch.has_features[i]:
                self.dead_letter(
                    work.message(i), Reason.UNKNOWN_EVENT,
                    f"no cached features for event {event_id!r} (never seen here, expired or "
                    "already labeled) and the feedback carries none",
                )
                return False
        return True

    def _learn(
        self,
        work: InFlight,
        idx: np.ndarray,
        X: np.ndarray,
        offsets: np.ndarray,
        predicted: list[Any],
        hit: np.ndarray | None,
    ) -> np.ndarray | None:
        """Learn, mark and score; the labels a model refused go to the dead-letter topic.
        Returns which events were learned (None: all).  ``hit`` tells which feedback found the
        prediction of its event (None: all did); the others have none to score."""
        models, batch = self.models, work.batch
        rows = work.rows[idx]
        labels = take(batch.labels, idx.tolist())
        errors = models.bank.learn(rows, X, labels, self._dicts(batch, idx, X))
        ok = None
        if errors.count(None) < len(errors):
            ok = np.array([e is None for e in errors], dtype=bool)
            for j in np.flatnonzero(~ok).tolist():
                error = errors[j]
                assert error is not None
                self.dead_letter(work.message(int(idx[j])), error.reason, str(error))
            idx, offsets, rows = idx[ok], offsets[ok], rows[ok]
            predicted, labels = where(ok, predicted, labels)
            hit = None if hit is None else hit[ok]
        home = models.partition[rows] == batch.partitions[idx]
        models.learned_offset[rows[home]] = offsets[home]
        self._score(rows, predicted, labels, hit)
        models.mark_learned(rows)
        self.metrics.learned.inc(len(idx))
        return ok

    def _dicts(
        self, batch: DecodedBatch, idx: np.ndarray, X: np.ndarray
    ) -> list[dict[str, float]] | None:
        """Feature dicts, only for banks that learn one event at a time (plugins)."""
        if not isinstance(self.models.bank, LoopBank):
            return None
        names = self.models.bank.features
        return [
            {str(names[j]): v for j, v in enumerate(x) if v != 0.0} or batch.features(i) or {}
            for i, x in zip(idx.tolist(), X.tolist(), strict=True)
        ]

    # --------------------------------------------------------------------------------- score
    def _score(
        self, rows: np.ndarray, predicted: list[Any], labels: list[Any], hit: np.ndarray | None
    ) -> None:
        """Prequential scoring of the predictions made before the labels were known (a model
        with nothing learned yet predicts None, which counts as wrong, as in River).  Feedback
        that found no prediction (``hit`` False) has none to score."""
        m = self.models
        if hit is not None:
            scored = np.flatnonzero(hit).tolist()
            if not scored:
                return
            rows = rows[scored]
            predicted = take(predicted, scored)
            labels = take(labels, scored)
        if self.is_classifier:
            m.scored[rows] += 1
            m.correct[rows] += np.fromiter(map(eq, predicted, labels), bool, len(labels))
            return
        known = [j for j, p in enumerate(predicted) if p is not None]
        error = np.array([float(predicted[j]) - float(labels[j]) for j in known])
        rows = rows[known]
        m.scored[rows] += 1
        m.abs_err[rows] += np.abs(error)
        m.sq_err[rows] += error * error

    def prequential_records(self) -> list[tuple[str | None, bytes]]:
        """The metrics-topic records owed: the prequential metrics of each key that learned
        since the last call, and overall (key None); none if nothing was ever scored."""
        m = self.models
        changed = m.take_changed()
        keys = [m.row_key[r] for r in changed.tolist()]
        every = np.fromiter(m.rows.values(), dtype=np.intp, count=len(m.rows))
        n = np.append(m.scored[changed], m.scored[every].sum())
        if n[-1] == 0:
            return []
        safe = np.maximum(n, 1)
        out: dict[str, Any] = {}
        if self.is_classifier:
            correct = np.append(m.correct[changed], m.correct[every].sum())
            out["accuracy"] = np.where(n > 0, correct / safe, np.nan)
            self.metrics.accuracy.labels(algorithm=self.algorithm).set(float(out["accuracy"][-1]))
        else:
            abs_err = np.append(m.abs_err[changed], m.abs_err[every].sum())
            sq_err = np.append(m.sq_err[changed], m.sq_err[every].sum())
            out["mae"] = np.where(n > 0, abs_err / safe, np.nan)
            out["rmse"] = np.where(n > 0, np.sqrt(sq_err / safe), np.nan)
        record_keys: list[str | None] = [*keys, None]
        values = self.outputs.metrics.encode_batch(
            record_keys, n, window=n, timestamp=int(time.time() * 1000),
            algorithm=self.algorithm, **out,
        )
        return list(zip(record_keys, values, strict=True))

    # ---------------------------------------------------------------------------- dead letters
    def dead_letter(self, message: Message, reason: str, error: str) -> None:
        """The original bytes to the dead-letter topic, with the reason in headers."""
        deadletter.produce_dead_letter(
            self.producer, self.topics.dead_letter, message, reason, error,
            max_bytes=self.max_record_bytes,
        )
        self.metrics.dead_letter(reason)


def _same_classes(predicted: list[StagePrediction]) -> list[list[StagePrediction]]:
    """Runs of consecutive stage predictions that can be encoded together: the same class
    list, and probabilities and scores present alike."""
    groups: list[list[StagePrediction]] = []
    last: Any = None
    for stage in predicted:
        p = stage.prediction
        shape = (p.classes, p.proba is None, p.score is None)
        if groups and shape == last:
            groups[-1].append(stage)
        else:
            groups.append([stage])
            last = shape
    return groups


def _known(parts: list[BankPrediction]) -> np.ndarray | None:
    """The stages' known-class masks one after another (None if every model knows every class)."""
    if all(p.known is None for p in parts):
        return None
    return np.concatenate([
        np.ones((len(p.labels), len(p.classes or [])), np.bool_) if p.known is None else p.known
        for p in parts
    ])  # fmt: skip


def _stack(parts: list[Any]) -> Any:
    """The parts one after another (rows of matrices), or None if they are None."""
    if parts[0] is None:
        return None
    if len(parts) == 1:
        return parts[0]
    return np.concatenate([np.asarray(p) for p in parts])

