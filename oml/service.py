"""The service loop: predict-and-cache, retrieve-and-update, over Kafka, exactly once.

Read it top to bottom in :meth:`Service.run`: poll a batch, decode it, split it into stages
(:mod:`oml.stages`) in which each key learns at most once, predict for unlabeled events and cache
their features, learn from feedback, and at each commit interval write the changelogs and
commit (:meth:`Service.commit` documents the order).  Partitions come and go through the
consumer group; on assignment their models and feature cache are rebuilt from the changelogs
before any of their events is handled.
"""

from __future__ import annotations

import gc
import signal
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, itemgetter, not_
from typing import Any, cast

import numpy as np
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from oml.bank import BankPrediction, LoopBank, all_distinct
from oml.codecs._util import message_column, message_ints
from oml.codecs.errors import Reason
from oml.codecs.events import DecodedBatch, EventCodec
from oml.config import Config
from oml.kafka import clients, deadletter, topics
from oml.kafka.restore import ChangelogReader
from oml.kafka.watch import BrokerWatch
from oml.learner import StateError
from oml.lifecycle import is_fatal, log_end
from oml.observability import ServiceMetrics
from oml.registry import Registry, default_registry
from oml.stages import plan_stages
from oml.state.cache import (
    KEY,
    PREDICTION,
    CacheRecordError,
    FeatureCache,
    decode_cached,
)
from oml.state.models import ModelStore

log = structlog.get_logger()

_KEY_OF, _PREDICTION_OF = itemgetter(KEY), itemgetter(PREDICTION)

_MAX_FAILURES = 5
"""Batch failures in a row that no message explains (broker trouble) before the service stops."""

OFFSET_HEADER = "oml.offset"
"""Changelog record header: the input offset the record follows from."""


class RestoreError(RuntimeError):
    """A changelog record that cannot be decoded: the service stops rather than skip it."""


@dataclass
class Summary:
    """What a run did; logged as one line at shutdown."""

    events: int = 0
    predictions: int = 0
    learned: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    commits: int = 0
    aborts: int = 0
    cache_misses: int = 0
    duplicates: int = 0
    restored_models: int = 0
    restored_cache: int = 0
    seconds: float = 0.0
    busy_seconds: float = 0.0  # from the first event consumed to the last commit


class Service:
    """One instance of the service: a consumer-group member with its models and cache."""

    def __init__(
        self,
        config: Config,
        *,
        bootstrap_servers: str | None = None,
        registry: Registry | None = None,
        metrics: ServiceMetrics | None = None,
        consumer_settings: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.consumer_settings = dict(consumer_settings or {})
        servers = bootstrap_servers or config.kafka.bootstrap_servers
        if not servers:
            raise ValueError("no bootstrap servers: configure kafka.bootstrap_servers")
        self.bootstrap_servers: str = servers
        self.registry = registry or default_registry()
        self.metrics = metrics or ServiceMetrics(process_metrics=False)
        self.algorithm = config.model.algorithm
        template = self.registry.create(self.algorithm, dict(config.model.params))
        self.is_classifier = hasattr(template, "predict_proba_one")
        self.models = ModelStore(template, self.registry)
        self.models.bank.max_classes = config.model.max_classes
        self.cache = FeatureCache(config.cache.ttl_ms, config.cache.max_entries,
                                  max_lead_ms=round(config.cache.max_clock_lead_s * 1000))
        self.codec = EventCodec.from_config(config)
        self.topics = config.topics
        self.exactly_once = config.processing.guarantee == "exactly-once"
        self.instance_id = config.kafka.instance_id or clients.default_instance_id()
        self.summary = Summary()
        self._positions: dict[int, int] = {}  # partition -> next offset, since the last commit
        # feedback may pair with its event inside a batch (tests switch it off to check that
        # both ways give the same results)
        self.pair_in_batch = True
        self._last_offset: dict[int, int] = {}  # partition -> last offset processed
        self._stop = False
        self._failed = False  # the run ends in an exception
        self._error: BaseException | None = None  # ... this one
        self._in_transaction = False
        self._owned: set[int] = set()  # the input partitions assigned to this instance
        self._revoked = False  # partitions were revoked during the last poll
        # fault isolation (see _handle): partition -> last offset of a failed batch, whose
        # messages are handled one at a time; and the messages that failed alone, set aside
        self._isolate: dict[int, int] = {}
        self._poison: dict[tuple[int, int], str] = {}
        self._suspects: set[tuple[int, int]] = set()  # failed alone once (retried once)
        self._failures = 0  # consecutive batch failures that no message explains
        self._idle_since: float | None = None
        self._max_record_bytes = 1_000_000  # the producer's message.max.bytes
        self._last_commit = self._last_metrics = time.monotonic()
        # the clients exist from _connect until the run ends (None outside a run)
        self.consumer: Consumer = None  # type: ignore[assignment]
        self.producer: Producer = None  # type: ignore[assignment]
        self.reader: ChangelogReader | None = None
        self.watch: BrokerWatch = None  # type: ignore[assignment]  # the cluster, checked

    # ------------------------------------------------------------------------------- running
    def stop(self, *_: object) -> None:
        """Ask the loop to finish its batch, commit and return (safe in a signal handler)."""
        self._stop = True

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def run(self) -> Summary:
        """Poll, decode, route, write, commit; until stopped or a bound is reached."""
        processing = self.config.processing
        started = time.monotonic()
        first_event: float | None = None
        thresholds = gc.get_threshold()
        if processing.gc_threshold:  # see ProcessingConfig.gc_threshold
            gc.set_threshold(processing.gc_threshold, *thresholds[1:])
        try:
            self._connect()  # inside: a failure to start is reported as any other
            self._idle_since = None  # counts once partitions are assigned
            while not self._stop:
                self.watch.check()  # the cluster lost our topics or offsets: stop, loudly
                messages = self._poll()
                self.metrics.heartbeat()
                events = messages
                if any(message_column(messages, "error")):  # rare: partition ends, errors
                    events = [m for m in messages if m.error() is None]
                    for m in messages:
                        self._check_error(m)
                if self._revoked:  # a rebalance inside the poll: only what is still ours
                    events = [m for m in events if m.partition() in self._owned]
                    self._revoked = False
                if events:
                    self._idle_since = time.monotonic()
                    if first_event is None:
                        first_event = self._idle_since
                    self._handle(events)
                now = time.monotonic()
                if now - self._last_commit >= processing.commit_interval_ms / 1000:
                    self.commit()
                if now - self._last_metrics >= self.config.metrics.interval_s:
                    self.emit_metrics()
                if processing.max_events and self.summary.events >= processing.max_events:
                    break
                idle = 0.0 if self._idle_since is None else now - self._idle_since
                if processing.exit_when_idle_s and idle >= processing.exit_when_idle_s:
                    break
            self.watch.check()
            self.emit_metrics()
            self.commit()
            if first_event is not None:
                self.summary.busy_seconds = time.monotonic() - first_event
        except BaseException as exc:
            self._failed = True  # nothing of the unfinished batch may be committed now
            self._error = exc if self.watch is None else self.watch.failure or exc
            raise
        finally:
            gc.set_threshold(*thresholds)
            self.summary.seconds = time.monotonic() - started
            self._close()
        return self.summary

    def _connect(self) -> None:
        cfg, bs, extra = self.config, self.bootstrap_servers, self.config.kafka.librdkafka
        t = self.topics
        admin = AdminClient(clients.admin_config(bs, extra))
        topics.ensure_topics(
            admin, t.input, [t.models, t.cache], [t.predictions, t.metrics, t.dead_letter]
        )
        self.watch = BrokerWatch(
            admin, cfg.kafka.group_id, t.input, [t.models, t.cache, t.predictions, t.metrics,
                                                 t.dead_letter],
            metrics=self.metrics, stop=self.stop,
        ).start()
        if self.exactly_once:
            producer_config = clients.transactional_producer_config(
                bs, cfg.kafka.group_id, self.instance_id, extra
            )
        else:
            producer_config = clients.producer_config(bs, extra)
        self.producer = Producer(producer_config)
        self._max_record_bytes = int(producer_config.get("message.max.bytes", 1_000_000))
        self.consumer = Consumer(clients.consumer_config(  # a pinned id: a static member
            bs, cfg.kafka.group_id, {**self.consumer_settings, **extra},
            instance_id=cfg.kafka.instance_id,
        ))
        self.reader = ChangelogReader({"bootstrap.servers": bs, **extra})
        if self.exactly_once:
            self.producer.init_transactions(clients.CALL_TIMEOUT_S)
        self.consumer.subscribe(
            [t.input], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.metrics.set_phase("joining")
        log.info(
            "service_started", input=t.input, algorithm=self.algorithm,
            guarantee=cfg.processing.guarantee, group_id=cfg.kafka.group_id,
            instance_id=self.instance_id,
        )

    def _poll(self) -> list[Message]:
        """Whatever is already fetched, up to a batch; if nothing is, wait for the first
        message only (so a quiet stream is not held back to fill a batch)."""
        processing = self.config.processing
        messages = self.consumer.consume(processing.batch_size, 0)
        if messages:
            return messages
        first = self.consumer.poll(processing.poll_timeout_s)
        if first is None:
            return []
        return [first, *self.consumer.consume(processing.batch_size - 1, 0)]

    def _check_error(self, message: Message) -> None:
        error = message.error()
        if error is None or error.code() == KafkaError._PARTITION_EOF:
            return
        if error.fatal():
            raise KafkaException(error)
        log.warning("consume_error", error=clients.describe_error(error))

    # ------------------------------------------------------------------------ fault isolation
    def _handle(self, messages: list[Message]) -> None:
        """Process a polled batch, isolating faults: an exception while handling it rewinds to
        the last commit (:meth:`_rewind`) and the batch is handled again one message at a time,
        each committed alone, so that a message that fails by itself can be named and set aside
        (dead-lettered as ``internal_error``); a failure that no message explains leaves none
        of the batch's partial work committed."""
        if self._poison:
            messages = self._set_aside(messages)
        if not self._isolate:
            self._try(messages)
            return
        for i, m in enumerate(messages):
            if not self._isolate:
                self._try(messages[i:])
                return
            if not self._try([m]):
                return  # rewound: what follows is read again
            p, offset = int(m.partition()), int(m.offset())  # type: ignore[arg-type]
            self._suspects.discard((p, offset))
            if offset >= self._isolate.get(p, offset):
                self._isolate.pop(p, None)
                if not self._isolate:
                    log.info("fault_isolation_ended")
            self.commit()

    def _try(self, messages: list[Message]) -> bool:
        """Process, inside a transaction under exactly-once; False if it failed and rewound."""
        if not messages:
            return True
        self._begin()
        try:
            self.process(messages)
        except KafkaException as exc:
            if exc.args[0].fatal():
                raise
            self._rewind(messages, exc, pinned=False)
            return False
        except Exception as exc:  # a bug or a message no check foresaw: never fatal
            self._rewind(messages, exc, pinned=True)
            return False
        self._failures = 0
        return True

    def _rewind(self, messages: list[Message], exc: Exception, *, pinned: bool) -> None:
        """After a failed batch: a message that failed alone is set aside; a failed batch of
        several is handled again one message at a time.  Then the open transaction is aborted
        and state and positions go back to the last commit."""
        if self.exactly_once and self._in_transaction:  # first: a fenced producer fails here,
            self.producer.abort_transaction(clients.CALL_TIMEOUT_S)  # and that is the failure
            self._in_transaction = False
        error = f"{type(exc).__name__}: {exc}"
        first, last = messages[0], messages[-1]
        log.error("batch_failed", error=error, messages=len(messages),
                  partition=first.partition(), offset=first.offset(), exc_info=exc)
        self.metrics.batch_failures.inc()
        where = (int(first.partition()), int(first.offset()))  # type: ignore[arg-type]
        if pinned and len(messages) == 1 and where in self._suspects:
            self._poison[where] = error  # failed alone twice: not a passing fault
        elif pinned and len(messages) == 1:
            self._suspects.add(where)  # once more, alone, before it is set aside
        elif pinned:
            for m in messages:
                p, o = int(m.partition()), int(m.offset())  # type: ignore[arg-type]
                self._isolate[p] = max(self._isolate.get(p, -1), o)
            log.warning("fault_isolation_started", partitions=sorted(self._isolate),
                        last_offset=last.offset())
        else:
            self._failures += 1
            if self._failures >= _MAX_FAILURES:
                raise exc
        self._rewind_to_committed()

    def _set_aside(self, messages: list[Message]) -> list[Message]:
        """Dead-letter the messages that failed alone; the others, to process."""
        keep = []
        for m in messages:
            p, o = int(m.partition()), int(m.offset())  # type: ignore[arg-type]
            error = self._poison.pop((p, o), None)
            if error is None:
                keep.append(m)
                continue
            self._suspects.discard((p, o))
            self._begin()
            self.dead_letter(m, Reason.INTERNAL_ERROR, error)
            self._positions[p] = o + 1
            self._last_offset[p] = o
        return keep

    def _rewind_to_committed(self) -> None:
        """Abort the open transaction, then rebuild state and positions from what is
        committed, as after a restart."""
        if self.exactly_once and self._in_transaction:
            self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
            self._in_transaction = False
        self.summary.aborts += 1
        self.metrics.aborts.inc()
        assigned = [tp.partition for tp in self.consumer.assignment()]
        self._drop(assigned)
        committed = self._restore(assigned)
        for p, offset in committed.items():
            self.consumer.seek(TopicPartition(self.topics.input, p, max(offset, 0)))

    def _close(self) -> None:
        models = len(self.models)  # before close() revokes (and drops) the partitions
        try:
            if self._failed and self._in_transaction:
                self._in_transaction = False  # (a fatal error, such as fencing: none to abort)
                try:
                    if not is_fatal(self._error):
                        self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
                except KafkaException as exc:  # the run's own error says more: keep it
                    log.warning("abort_failed", error=clients.describe_error(exc.args[0]))
            if self.consumer is not None:
                self.consumer.close()  # revokes the partitions: _on_revoke commits (not after a
                # failure, whose work is left for the next owner to redo)
            if self.producer is not None:
                if self._in_transaction:
                    self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
                self.producer.flush(clients.CALL_TIMEOUT_S)
            if self.reader is not None:
                self.reader.close()
        except BaseException as exc:  # the close failed (the broker gone): a failed run too
            self._error = self._error or exc
            raise
        finally:
            lost = None if self.watch is None else self.watch.failure
            if self.watch is not None:
                self.watch.stop()
            self.consumer = self.producer = None  # type: ignore[assignment]  # end with the run
            self.reader = None
            self._error = lost or self._error  # the cluster's loss explains what followed
            log_end(self.summary, models, self._error)  # service_stopped, or service_failed

    # ---------------------------------------------------------------------------- processing
    def process(self, messages: Sequence[Message]) -> None:
        """Handle one polled batch: decode it, then predict-and-cache and retrieve-and-update
        stage by stage (see :mod:`oml.stages`: a few array operations per stage, and exactly the
        results of going event by event), then emit the batch's predictions.

        Feedback for an unlabeled event of the same batch does not go through the cache when
        the batch allows it (see :meth:`_pair_in_batch`): its features and prediction are read
        from the batch, and only events still unresolved at the end of the batch are cached.
        """
        started = time.perf_counter()
        batch = self.codec.decoder.decode_messages(messages)
        offsets = message_ints(messages, "offset")
        for bad in batch.errors:
            self.dead_letter(messages[bad.index], bad.reason, bad.message)
        self._advance_positions(batch, messages, offsets)
        self.summary.events += len(messages)
        n_feedback = int(batch.has_label.sum())
        self.metrics.count_events("unlabeled", len(batch) - n_feedback)
        self.metrics.count_events("feedback", n_feedback)
        if len(batch):
            rows = self.models.rows_for_partitions(batch.partitions.tolist(), batch.keys)
            X = batch.matrix(self.models.bank)
            event_offsets = offsets[batch.index]
            pairs = self._pair_in_batch(batch, rows) if self.pair_in_batch else None
            predicted: list[Predicted] = []
            for unlabeled, labeled in plan_stages(rows, batch.has_label):
                if len(unlabeled):
                    predicted.append(
                        self._predict(batch, unlabeled, rows, X, event_offsets, pairs)
                    )
                if len(labeled):
                    self._retrieve_and_update(
                        batch, messages, labeled, rows, X, event_offsets, pairs
                    )
            headers = message_column(messages, "headers")  # None each, unless sent
            carried = None if headers.count(None) == len(headers) else headers
            self._emit_predictions(batch, predicted, X, event_offsets, pairs, carried)
            self.producer.poll(0)
        self.metrics.batch_latency.observe(time.perf_counter() - started)

    def _pair_in_batch(self, batch: DecodedBatch, rows: np.ndarray) -> _Pairs | None:
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
        if len(position) < len(u_ids) or not self.cache.entries.keys().isdisjoint(u_ids):
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
        return _Pairs(partners, np.zeros(len(batch), dtype=bool), np.empty(len(batch), object))

    def _advance_positions(
        self, batch: DecodedBatch, messages: Sequence[Message], offsets: np.ndarray
    ) -> None:
        """Each partition's next offset to commit: past the last message of the batch."""
        last: dict[int, int] = {}
        parts, good = batch.partitions, offsets[batch.index]
        for p in np.unique(parts).tolist():
            last[p] = int(good[parts == p].max())
        for bad in batch.errors:  # dead letters count as processed too
            m = messages[bad.index]
            p, o = int(m.partition()), int(m.offset())  # type: ignore[arg-type]
            last[p] = max(last.get(p, -1), o)
        for p, o in last.items():
            self._positions[p] = o + 1
            self._last_offset[p] = o

    def _predict(
        self,
        batch: DecodedBatch,
        idx: np.ndarray,
        rows: np.ndarray,
        X: np.ndarray,
        offsets: np.ndarray,
        pairs: _Pairs | None,
    ) -> Predicted:
        """Predict a stage's unlabeled events; cache them now unless the batch pairs in-batch
        (then :meth:`_emit_predictions` caches what is left unresolved)."""
        bank = self.models.bank
        stage_rows, Xw = rows[idx], X[idx]
        prediction = bank.predict(stage_rows, Xw, self._dicts(batch, idx, Xw))
        n_updates = bank.n_updates(stage_rows)
        if pairs is None:
            pick = idx.tolist()
            self.cache.put_many(
                _take(batch.event_ids, pick), _take(batch.keys, pick), Xw, prediction.labels,
                batch.timestamps[idx].tolist(), offsets[idx].tolist(),
                batch.partitions[idx].tolist(),
            )
        else:
            pairs.predicted[idx] = prediction.labels
        return idx, prediction, n_updates

    def _emit_predictions(
        self,
        batch: DecodedBatch,
        predicted: list[Predicted],
        X: np.ndarray,
        offsets: np.ndarray,
        pairs: _Pairs | None,
        headers: list[Any] | None = None,
    ) -> None:
        """Encode and produce the batch's predictions in stage order, a few encoder calls per
        batch (one per run of stages with the same class list); cache the events still
        unresolved when the batch paired in-batch.  ``headers`` (by message, None when no
        message of the batch has any) are carried to each event's prediction, as they came."""
        if not predicted:
            return
        now = int(time.time() * 1000)
        produce, topic = self.producer.produce, self.topics.predictions
        every = np.concatenate([idx for idx, _, _ in predicted])
        for group in _same_classes(predicted):
            idx = np.concatenate([g[0] for g in group]) if len(group) > 1 else group[0][0]
            first = group[0][1]
            labels = [y for g in group for y in g[1].labels] if len(group) > 1 else first.labels
            pick = idx.tolist()
            keys = _take(batch.keys, pick)
            values = self.codec.predictions.encode_batch(
                _take(batch.event_ids, pick), keys, labels,
                n_updates=_stack([g[2] for g in group]),
                event_timestamps=batch.timestamps[idx], processed_timestamp=now,
                algorithm=self.algorithm, classes=first.classes,
                proba=_stack([g[1].proba for g in group]),
                score=_stack([g[1].score for g in group]),
                known=_known([g[1] for g in group]),
            )
            if headers is None:
                for key, value in zip(keys, values, strict=True):
                    produce(topic, value, key)
            else:
                carried = _take(headers, batch.index[idx].tolist())
                for key, value, h in zip(keys, values, carried, strict=True):
                    produce(topic, value, key, headers=h)
        self.summary.predictions += len(every)
        self.metrics.predicted.inc(len(every))
        ts = batch.timestamps[every]
        valid = ts[ts >= 0]
        if len(valid):
            self.metrics.event_latency.observe_many((now - valid) / 1000.0)
        if pairs is not None:
            left = every[~pairs.resolved[every]]
            if len(left):
                pick = left.tolist()
                self.cache.put_many(
                    _take(batch.event_ids, pick), _take(batch.keys, pick), X[left],
                    pairs.predicted[left].tolist(), batch.timestamps[left].tolist(),
                    offsets[left].tolist(), batch.partitions[left].tolist(),
                )

    def _retrieve_and_update(
        self,
        batch: DecodedBatch,
        messages: Sequence[Message],
        idx: np.ndarray,
        rows: np.ndarray,
        X: np.ndarray,
        offsets: np.ndarray,
        pairs: _Pairs | None = None,
    ) -> None:
        """Learn from a stage's feedback (at most one per key), with the features and the
        prediction of the event each one labels: from the batch when it is paired there,
        otherwise from the cache."""
        self.cache.advance(int(batch.timestamps[idx].max()))
        if pairs is not None:
            partner = pairs.partner[idx]
            inside = partner >= 0
            if inside.all():
                self._update_from_batch(batch, messages, idx, partner, rows, X, offsets, pairs)
                return
            if inside.any():  # the keys differ, so the two halves may go one after the other
                self._update_from_batch(
                    batch, messages, idx[inside], partner[inside], rows, X, offsets, pairs
                )
                idx = idx[~inside]
        cache = self.cache
        pick = idx.tolist()
        ids = _take(batch.event_ids, pick)
        keys = _take(batch.keys, pick)
        entries: list[Any] = list(map(cache.entries.get, ids))
        offs = offsets[idx]
        replayed = self._replayed(batch, idx, rows, offs)
        keep = np.ones(len(idx), dtype=bool)
        if replayed.any() or None in entries or list(map(_KEY_OF, entries)) != keys:
            for j in range(len(idx)):
                keep[j] = self._check_feedback(
                    batch, messages, pick[j], entries[j], bool(replayed[j]), offs[j]
                )
        self.metrics.cache_hits.inc(len(entries) - entries.count(None))
        if not keep.all():
            idx, offs = idx[keep], offs[keep]
            ids, keys, entries = _where(keep, ids, keys, entries)
        if not len(idx):
            return
        width = X.shape[1]
        hit: np.ndarray | None = None
        if None not in entries:
            Xl = cache.rows(entries, width)
            predicted = list(map(_PREDICTION_OF, entries))
        else:  # cache misses learn from the feedback's own features
            Xl = X[idx].copy()
            hit = np.array([e is not None for e in entries], dtype=bool)
            found = np.flatnonzero(hit).tolist()
            if found:
                Xl[found] = cache.rows([entries[j] for j in found], width)
            predicted = [None if e is None else e[PREDICTION] for e in entries]
        ok = self._learn(batch, messages, idx, rows, Xl, offs, predicted, hit)
        if ok is not None:
            ids = _take(ids, np.flatnonzero(ok).tolist())
            offs = offs[ok]
        cache.drop_many(ids, offs.tolist())

    def _update_from_batch(
        self,
        batch: DecodedBatch,
        messages: Sequence[Message],
        idx: np.ndarray,
        partner: np.ndarray,
        rows: np.ndarray,
        X: np.ndarray,
        offsets: np.ndarray,
        pairs: _Pairs,
    ) -> None:
        """Feedback whose event is earlier in this batch (same key: see _pair_in_batch)."""
        offs = offsets[idx]
        replayed = self._replayed(batch, idx, rows, offs)
        self.metrics.cache_hits.inc(len(idx))
        if replayed.any():  # replayed input whose update is in the state already
            self.summary.duplicates += int(replayed.sum())
            self.metrics.duplicates.inc(int(replayed.sum()))
            pairs.resolved[partner[replayed]] = True
            fresh = ~replayed
            idx, partner, offs = idx[fresh], partner[fresh], offs[fresh]
            if not len(idx):
                return
        predicted = pairs.predicted[partner].tolist()
        ok = self._learn(batch, messages, idx, rows, X[partner], offs, predicted, None)
        pairs.resolved[partner if ok is None else partner[ok]] = True

    def _learn(
        self,
        batch: DecodedBatch,
        messages: Sequence[Message],
        idx: np.ndarray,
        rows: np.ndarray,
        Xl: np.ndarray,
        offs: np.ndarray,
        predicted: list[Any],
        hit: np.ndarray | None,
    ) -> np.ndarray | None:
        """Learn, mark and score; the labels a model refused go to the dead-letter topic.
        Returns which events were learned (None: all).  ``hit`` tells which feedback found the
        prediction of its event (None: all did); the others have none to score."""
        models = self.models
        stage_rows = rows[idx]
        labels = _take(batch.labels, idx.tolist())
        errors = models.bank.learn(stage_rows, Xl, labels, self._dicts(batch, idx, Xl))
        ok = None
        if errors.count(None) < len(errors):
            ok = np.array([e is None for e in errors], dtype=bool)
            for j in np.flatnonzero(~ok).tolist():
                error = errors[j]
                assert error is not None
                self.dead_letter(messages[batch.index[idx[j]]], error.reason, str(error))
            idx, offs, stage_rows = idx[ok], offs[ok], stage_rows[ok]
            predicted, labels = _where(ok, predicted, labels)
            hit = None if hit is None else hit[ok]
        home = models.partition[stage_rows] == batch.partitions[idx]
        models.learned_offset[stage_rows[home]] = offs[home]
        self._score(stage_rows, predicted, labels, hit)
        models.mark_learned(stage_rows)
        self.summary.learned += len(idx)
        self.metrics.learned.inc(len(idx))
        return ok

    def _replayed(
        self, batch: DecodedBatch, idx: np.ndarray, rows: np.ndarray, offs: np.ndarray
    ) -> np.ndarray:
        """Which feedback is replayed input whose update is in the model state already: at or
        before its model's learned-offset mark.  The mark counts offsets of the model's own
        partition only; a key that also reaches another partition (a second producer with
        another partitioner, or a Kafka key that differs from the body's key) is never taken
        for a replay there, and its updates there do not move the mark."""
        rows = rows[idx]
        models = self.models
        return (offs <= models.learned_offset[rows]) & (
            models.partition[rows] == batch.partitions[idx])

    def _check_feedback(
        self, batch: DecodedBatch, messages: Sequence[Message], i: int, entry: Any,
        replayed: bool, offset: int,
    ) -> bool:
        """The rare cases of a feedback event; True if it is to be learned from."""
        event_id, message = batch.event_ids[i], messages[batch.index[i]]
        if entry is not None and entry[KEY] != batch.keys[i]:
            self.dead_letter(
                message, Reason.KEY_MISMATCH,
                f"event {event_id!r} was scored for key {entry[KEY]!r}, "
                f"its feedback names key {batch.keys[i]!r}",
            )
            return False
        if replayed:
            self.summary.duplicates += 1  # replayed input whose update is in the state already
            self.metrics.duplicates.inc()
            self.cache.drop_many([event_id], [int(offset)])
            return False
        if entry is None:
            self.summary.cache_misses += 1
            self.metrics.cache_misses.inc()
            if not batch.has_features[i]:
                self.dead_letter(
                    message, Reason.UNKNOWN_EVENT,
                    f"no cached features for event {event_id!r} (never seen here, expired or "
                    "already labeled) and the feedback carries none",
                )
                return False
        return True

    def _dicts(
        self, batch: DecodedBatch, idx: np.ndarray, Xw: np.ndarray
    ) -> list[dict[str, float]] | None:
        """Feature dicts, only for banks that learn one event at a time (plugins)."""
        if not isinstance(self.models.bank, LoopBank):
            return None
        names = self.models.bank.features
        return [
            {str(names[j]): v for j, v in enumerate(row) if v != 0.0} or batch.features(i) or {}
            for i, row in zip(idx.tolist(), Xw.tolist(), strict=True)
        ]

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
            predicted = _take(predicted, scored)
            labels = _take(labels, scored)
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

    def dead_letter(self, message: Message, reason: str, error: str) -> None:
        """The original bytes to the dead-letter topic, with the reason in headers."""
        deadletter.produce_dead_letter(
            self.producer, self.topics.dead_letter, message, reason, error,
            max_bytes=self._max_record_bytes,
        )
        self.summary.dead_letters[reason] += 1
        self.metrics.dead_letter(reason)

    # ------------------------------------------------------------------------------- commits
    def _begin(self) -> None:
        if self.exactly_once and not self._in_transaction:
            self.producer.begin_transaction()
            self._in_transaction = True

    def commit(self) -> None:
        """Make everything since the last commit durable and visible, in this order:

        1. Expire feature-cache entries past their event-time TTL or the size cap (their
           tombstones join the writes below).
        2. Write the changelogs, coalesced: each key's model state once however often it
           learned, each new cache entry still unresolved once, and a tombstone for each
           written entry that went.  Every record goes to the changelog partition with its
           input partition's number (the topics are co-partitioned) and carries, in the
           ``oml.offset`` header, the input offset it follows from.
        3. Exactly-once: add the input offsets to the transaction and commit it, so the
           predictions, dead letters, metrics and changelog writes become visible together
           with the offsets, or not at all.  At-least-once: wait until the producer has every
           record acknowledged, then commit the offsets.  A crash between the two replays input
           whose updates are already in the changelog; restore leaves out changelog records at
           or past the committed offset, and each model's learned-offset mark skips replayed
           feedback, so an event is learned at most once.
        """
        if self.producer is None or self.consumer is None:
            return
        self._write_changelogs()
        offsets = [
            TopicPartition(self.topics.input, p, offset) for p, offset in self._positions.items()
        ]
        if self.exactly_once:
            if not self._in_transaction:
                return
            try:
                if offsets:
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), clients.CALL_TIMEOUT_S
                    )
                self.producer.commit_transaction(clients.CALL_TIMEOUT_S)
                self._in_transaction = False
            except KafkaException as exc:
                self._recover_from_failed_commit(exc)
                return
        else:
            remaining = self.producer.flush(clients.CALL_TIMEOUT_S)
            if remaining:
                raise RuntimeError(f"{remaining} records not acknowledged; offsets not committed")
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        self._positions.clear()
        self._last_commit = time.monotonic()
        self.summary.commits += 1
        self.metrics.commits.inc()
        self.metrics.cache_size.set(len(self.cache))
        self.metrics.models.set(len(self.models))

    def _write_changelogs(self) -> None:
        cache, models = self.cache, self.models
        before = cache.expired + cache.evicted
        cache.expire(self._last_offset)
        self.metrics.cache_expired.inc(cache.expired + cache.evicted - before)
        produce = self.producer.produce
        for partition, key, value, offset in models.take_changes():
            produce(
                self.topics.models, value=value, key=key.encode(), partition=partition,
                headers=[(OFFSET_HEADER, str(offset).encode())],
            )
        for partition, event_id, entry, offset in cache.take_changes(models.bank.features):
            produce(
                self.topics.cache, value=entry, key=event_id.encode(), partition=partition,
                headers=[(OFFSET_HEADER, str(offset).encode())],
            )

    def _recover_from_failed_commit(self, exc: KafkaException) -> None:
        """An abortable transaction error: abort, then rebuild state and positions from what
        is committed, as after a restart.  Anything else is fatal."""
        error = exc.args[0]
        if not error.txn_requires_abort():
            raise exc
        log.warning("transaction_aborted", error=clients.describe_error(error))
        self._in_transaction = True  # still open: aborted next
        self._rewind_to_committed()

    # ---------------------------------------------------------------------------- rebalances
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        self._owned.update(numbers)
        self.metrics.assigned(numbers, len(self._owned))
        self.metrics.set_ready(False)
        self._restore(numbers)
        self.metrics.set_ready(True)
        self._idle_since = time.monotonic()  # idleness counts from when there is work to do
        log.info("partitions_assigned", partitions=numbers, models=len(self.models))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        if numbers and not self._failed:
            self._begin()
            self.commit()
        self._revoked = True
        self._owned.difference_update(numbers)
        self._drop(numbers)
        self.metrics.revoked(numbers, len(self._owned))
        log.info("partitions_revoked", partitions=numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        if self.exactly_once and self._in_transaction:
            self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
            self._in_transaction = False
        self._revoked = True
        self._owned.difference_update(numbers)
        self._drop(numbers)
        self.metrics.revoked(numbers, len(self._owned), lost=True)
        log.warning("partitions_lost", partitions=numbers)

    def _drop(self, partitions: Sequence[int]) -> None:
        for p in partitions:
            self.models.drop_partition(p)
            self.cache.drop_partition(p)
            self._positions.pop(p, None)
            self._last_offset.pop(p, None)

    def _restore(self, partitions: Sequence[int]) -> dict[int, int]:
        """Rebuild each partition's models and feature cache from its changelogs, before any of
        its input is processed; return the committed input offsets.

        The last record per key wins and a null deletes, which is right whether or not the log
        has been compacted; records are read ``read_committed`` to the end of the partition.
        Records that follow from input at or past the group's committed offset are left out:
        they belong to work that was never committed (a broker that shows aborted transactions,
        or an at-least-once write whose offsets never made it), and that input will be
        processed again.  A record that cannot be decoded stops the service, naming it.
        """
        t = self.topics
        committed = {
            tp.partition: tp.offset
            for tp in self.consumer.committed(
                [TopicPartition(t.input, p) for p in partitions], timeout=30
            )
        }
        for p in partitions:
            self.metrics.restore_started(p)
            limit = max(committed.get(p, 0), 0)
            self._last_offset[p] = limit - 1
            models = self._latest(t.models, p, limit)
            for key, (value, offset) in models.items():
                try:
                    self.models.load(p, key.decode(), value)
                except (StateError, UnicodeDecodeError) as exc:
                    raise RestoreError(
                        f"model state for key {key!r} in {t.models} partition {p} at offset "
                        f"{offset} cannot be decoded: {exc}"
                    ) from exc
            bank = self.models.bank
            restored = []
            for key, (value, offset) in self._latest(t.cache, p, limit).items():
                try:
                    record = decode_cached(value)
                except CacheRecordError as exc:
                    raise RestoreError(
                        f"feature-cache record for event {key!r} in {t.cache} partition {p} at "
                        f"offset {offset} cannot be decoded: {exc}"
                    ) from exc
                cols = bank.columns(list(record.features))
                row = np.zeros(len(bank.features))
                row[cols] = list(record.features.values())
                restored.append((key.decode(), record, row))
            self.cache.restore(p, restored)
            self.summary.restored_models += len(models)
            self.summary.restored_cache += len(restored)
            self.metrics.restore_finished(p)
            log.info("partition_restored", partition=p, models=len(models), cached=len(restored),
                     committed_offset=limit)
        self.metrics.models.set(len(self.models))
        self._restore_feature_space()
        return {p: committed.get(p, 0) for p in partitions}

    def _restore_feature_space(self) -> None:
        """Tell the decoder what the restored models already know: their feature names (which
        count against ``model.max_features``) and, for list-shaped features (named by position
        ``"0"``..``"n-1"``), their length, so that no first list after a restart can set it."""
        decoder, names = self.codec.decoder, [str(f) for f in self.models.bank.features]
        decoder.restore_feature_names(names)
        if names and decoder.n_features is None and set(names) == set(map(str, range(len(names)))):
            with suppress(ValueError):  # a configured model.n_features wins
                decoder.restore_feature_count(len(names))

    def _latest(self, topic: str, partition: int, limit: int) -> dict[bytes, tuple[bytes, int]]:
        """Last value per key of a changelog partition (nulls delete), among records that
        follow from input before ``limit``."""
        latest: dict[bytes, tuple[bytes | None, int]] = {}
        assert self.reader is not None, "restore runs inside a run"
        for records in self.reader.batches(topic, partition, headers=True):
            for key, value, offset, headers in cast(list[Any], records):
                source = _offset_header(headers)
                if source is not None and source >= limit:
                    continue
                latest[key] = (value, offset)
            self.metrics.add_restored(partition, len(records))
        return {k: (v, o) for k, (v, o) in latest.items() if v is not None}

    # ------------------------------------------------------------------------------- metrics
    def _update_lag(self) -> None:
        if self.consumer is not None:
            self.metrics.set_lag(_lags(self.consumer, self.topics.input, sorted(self._owned)))

    def emit_metrics(self) -> None:
        """Prequential metrics, per key for the keys that learned since the last emission and
        overall, to the metrics topic."""
        self._last_metrics = time.monotonic()
        if self.producer is None:
            return
        self._update_lag()
        m = self.models
        rows = m.take_changed()
        keys = [m.row_key[r] for r in rows.tolist()]
        all_rows = np.fromiter(m.rows.values(), dtype=np.intp, count=len(m.rows))
        n = np.append(m.scored[rows], m.scored[all_rows].sum())
        if n[-1] == 0:
            return
        safe = np.maximum(n, 1)
        out: dict[str, Any] = {}
        if self.is_classifier:
            correct = np.append(m.correct[rows], m.correct[all_rows].sum())
            out["accuracy"] = np.where(n > 0, correct / safe, np.nan)
            self.metrics.accuracy.labels(algorithm=self.algorithm).set(float(out["accuracy"][-1]))
        else:
            abs_err = np.append(m.abs_err[rows], m.abs_err[all_rows].sum())
            sq_err = np.append(m.sq_err[rows], m.sq_err[all_rows].sum())
            out["mae"] = np.where(n > 0, abs_err / safe, np.nan)
            out["rmse"] = np.where(n > 0, np.sqrt(sq_err / safe), np.nan)
        record_keys: list[str | None] = [*keys, None]
        values = self.codec.metrics.encode_batch(
            record_keys, n, window=n, timestamp=int(time.time() * 1000),
            algorithm=self.algorithm, **out,
        )
        self._begin()
        for key, value in zip(record_keys, values, strict=True):
            if key is None:  # the overall record: always partition 0, so it reads in order
                self.producer.produce(self.topics.metrics, value=value, partition=0)
            else:
                self.producer.produce(self.topics.metrics, value=value, key=key.encode())


def _lags(consumer: Consumer, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """High watermark (as of the last fetch, no request) minus position, per partition."""
    if not partitions:
        return {}
    out = {}
    for tp in consumer.position([TopicPartition(topic, p) for p in partitions]):
        if tp.offset < 0:
            continue  # nothing consumed yet
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0:
            out[tp.partition] = high - tp.offset
    return out


def _offset_header(headers: list[tuple[str, bytes]] | None) -> int | None:
    for name, value in headers or ():
        if name == OFFSET_HEADER:
            return int(value)
    return None


def _take(values: Sequence[Any], positions: list[int]) -> list[Any]:
    """``[values[i] for i in positions]``, in C."""
    if len(positions) == 1:
        return [values[positions[0]]]
    return list(itemgetter(*positions)(values)) if positions else []


def _where(mask: np.ndarray, *columns: list[Any]) -> list[list[Any]]:
    """Each list cut down to the positions where ``mask`` is True."""
    positions = np.flatnonzero(mask).tolist()
    return [_take(column, positions) for column in columns]


@dataclass
class _Pairs:
    """A batch's in-batch pairing, by batch position: each feedback's unlabeled event (-1:
    none in the batch), which unlabeled events are resolved, and their predictions."""

    partner: np.ndarray
    resolved: np.ndarray
    predicted: np.ndarray


Predicted = tuple[np.ndarray, BankPrediction, np.ndarray]  # (positions, prediction, n_updates)


def _same_classes(predicted: list[Predicted]) -> list[list[Predicted]]:
    """Runs of consecutive stage predictions that can be encoded together: the same class
    list, and probabilities and scores present alike."""
    groups: list[list[Predicted]] = []
    last: Any = None
    for item in predicted:
        p = item[1]
        shape = (p.classes, p.proba is None, p.score is None)
        if groups and shape == last:
            groups[-1].append(item)
        else:
            groups.append([item])
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
