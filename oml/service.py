"""The service loop: predict-and-cache, retrieve-and-update, over Kafka, exactly once.

Read it top to bottom in :meth:`Service.run`: poll a batch, process it (:mod:`oml.processing`:
decode, split into stages in which each key learns at most once, predict for unlabeled events
and cache their features, learn from feedback), and at each commit interval commit
(:mod:`oml.checkpoint`: the changelog writes and the commit order).  A batch that fails is
redone from the last commit, one message at a time if need be (:meth:`Service._handle`).
Partitions come and go through the consumer group; on assignment their models and feature
cache are rebuilt from the changelogs before any of their events is handled.
"""

from __future__ import annotations

import gc
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from oml.checkpoint import Checkpoint
from oml.codecs._util import message_column
from oml.codecs.errors import Reason
from oml.codecs.events import event_decoder
from oml.codecs.outputs import OutputCodecs
from oml.codecs.schema_registry import make_registry_client
from oml.config import Config
from oml.kafka import clients, topics
from oml.kafka.restore import ChangelogReader
from oml.kafka.watch import BrokerWatch
from oml.lifecycle import is_fatal, log_end
from oml.observability import ServiceMetrics
from oml.plugins import Registry, default_registry
from oml.processing import Processor
from oml.state.cache import FeatureCache
from oml.state.models import ModelStore

log = structlog.get_logger()

_MAX_FAILURES = 5
"""Batch failures in a row that no message explains (broker trouble) before the service stops."""


@dataclass(frozen=True)
class Summary:
    """What a run did; logged as one line at shutdown.  The counts that the metrics also
    export are read from them (:meth:`Service.summary`)."""

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
        self.models = ModelStore(template, self.registry)
        self.models.bank.max_classes = config.model.max_classes
        self.cache = FeatureCache(config.cache.ttl_ms, config.cache.max_entries,
                                  max_lead_ms=round(config.cache.max_clock_lead_s * 1000))
        schemas = (make_registry_client(config.messages)
                   if config.messages.format == "avro" else None)
        self.decoder = event_decoder(config, schemas)
        self.outputs = OutputCodecs.from_config(config, schemas)
        self.topics = config.topics
        self.exactly_once = config.processing.guarantee == "exactly-once"
        self.instance_id = config.kafka.instance_id or clients.default_instance_id()
        self.processor = Processor(
            self.models, self.cache, self.decoder, self.outputs, self.topics, self.metrics,
            algorithm=self.algorithm, is_classifier=hasattr(template, "predict_proba_one"),
        )
        self.checkpoint = Checkpoint(
            self.topics, self.models, self.cache, self.decoder, self.metrics,
            exactly_once=self.exactly_once,
        )
        self._seconds = self._busy_seconds = 0.0
        self._stop = False
        self._failed = False  # the run ends in an exception
        self._error: BaseException | None = None  # ... this one
        self._fatal = clients.FirstFatal()  # the clients' error_cb: what a bare _FATAL hides
        self.watch: BrokerWatch = None  # type: ignore[assignment]  # the cluster, checked
        self._owned: set[int] = set()  # the input partitions assigned to this instance
        self._revoked = False  # partitions were revoked during the last poll
        # fault isolation (see _handle): partition -> last offset of a failed batch, whose
        # messages are handled one at a time; and the messages that failed alone, set aside
        self._isolate: dict[int, int] = {}
        self._poison: dict[tuple[int, int], str] = {}
        self._suspects: set[tuple[int, int]] = set()  # failed alone once (retried once)
        self._failures = 0  # consecutive batch failures that no message explains
        self._idle_since: float | None = None
        self._last_metrics = time.monotonic()

    # the clients exist from _connect until the run ends (None outside a run); the processor
    # and the checkpoint use them
    @property
    def producer(self) -> Producer:
        return self.checkpoint.producer

    @producer.setter
    def producer(self, producer: Producer) -> None:
        self.checkpoint.producer = self.processor.producer = producer

    @property
    def consumer(self) -> Consumer:
        return self.checkpoint.consumer

    @consumer.setter
    def consumer(self, consumer: Consumer) -> None:
        self.checkpoint.consumer = consumer

    @property
    def summary(self) -> Summary:
        """What the run did so far; the counts come from the metrics."""
        value = self.metrics.registry.get_sample_value

        def count(name: str) -> int:
            return int(value(f"{name}_total") or 0)

        letters: Counter[str] = Counter()
        for metric in self.metrics.dead_letters.collect():
            for sample in metric.samples:
                if sample.name.endswith("_total") and sample.value:
                    letters[sample.labels["reason"]] = int(sample.value)
        return Summary(
            events=self.processor.events,
            predictions=count("oml_predict"), learned=count("oml_learn"),
            dead_letters=letters, commits=count("oml_commits"), aborts=count("oml_aborts"),
            cache_misses=count("oml_feature_cache_misses"), duplicates=count("oml_duplicates"),
            restored_models=self.checkpoint.restored_models,
            restored_cache=self.checkpoint.restored_cache,
            seconds=self._seconds, busy_seconds=self._busy_seconds,
        )

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
                if now - self.checkpoint.last_commit >= processing.commit_every_ms / 1000:
                    self.commit()
                if now - self._last_metrics >= self.config.metrics.interval_s:
                    self.emit_metrics()
                if processing.max_events and self.processor.events >= processing.max_events:
                    break
                idle = 0.0 if self._idle_since is None else now - self._idle_since
                if processing.exit_when_idle_s and idle >= processing.exit_when_idle_s:
                    break
            self.watch.check()
            self.emit_metrics()
            self.commit()
            if first_event is not None:
                self._busy_seconds = time.monotonic() - first_event
        except BaseException as exc:
            self._failed = True  # nothing of the unfinished batch may be committed now
            lost = None if self.watch is None else self.watch.failure
            self._error = lost or self._explain(exc)
            raise
        finally:
            gc.set_threshold(*thresholds)
            self._seconds = time.monotonic() - started
            self._close()
        return self.summary

    def _check_copartitioned(self, ready: topics.Topics) -> bool:
        """Whether the predictions topic has the input's partition count (oml creates it so).
        If not, each prediction is placed by its key, and a warning says so once."""
        n = ready.input.partitions
        (predictions,) = [o for o in ready.outputs if o.name == self.topics.predictions]
        if predictions.partitions == n:
            return True
        log.warning(
            "predictions_not_copartitioned", topic=predictions.name,
            partitions=predictions.partitions, input_partitions=n,
            consequence="a prediction goes to the partition of its key (murmur2), not to its "
            "event's partition number; give the topic the input's partition count to keep them "
            "together",
        )
        return False

    def _explain(self, exc: BaseException) -> BaseException:
        """What ``exc`` stands for: the fatal error a client reported, if any (else ``exc``)."""
        self._serve_error_callbacks(exc)
        return self._fatal.explain(exc)

    def _serve_error_callbacks(self, exc: BaseException) -> None:
        """Let the producer report what it knows (error_cb runs inside poll): a fatal error it
        reports is the cause of what failed after it.  A bare ``_FATAL`` can come before
        that report; then the transactional API names the fatal error at once."""
        error = clients.kafka_error(exc)
        bare = error is not None and error.code() == KafkaError._FATAL
        if self.producer is not None:
            if bare and self.exactly_once:
                self._fatal.learn_from(self.producer.abort_transaction, 1.0)
            self._fatal.learn_from(self.producer.poll, 0)
        # (not the consumer's poll: it would run the rebalance callbacks in a failed run)

    @property
    def error(self) -> BaseException | None:
        """What ended the last run, as its ``service_failed`` line names it (None: it stopped)."""
        return self._error

    def _connect(self) -> None:
        cfg, bs, extra = self.config, self.bootstrap_servers, self.config.kafka.librdkafka
        t = self.topics
        admin = AdminClient(clients.admin_config(bs, extra))
        ready = topics.ensure_topics(
            admin, t.input, [t.models, t.cache], [t.predictions, t.metrics, t.dead_letter]
        )
        self.processor.copartitioned = self._check_copartitioned(ready)
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
        self.producer = Producer({**producer_config, "error_cb": self._fatal})
        self.processor.max_record_bytes = int(producer_config.get("message.max.bytes", 1_000_000))
        self.consumer = Consumer(clients.consumer_config(  # a pinned id: a static member
            bs, cfg.kafka.group_id, {**self.consumer_settings, **extra, "error_cb": self._fatal},
            instance_id=cfg.kafka.instance_id,
        ))
        self.checkpoint.reader = ChangelogReader({"bootstrap.servers": bs, **extra})
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
        if clients.is_terminal(error):
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
        self.checkpoint.begin()
        try:
            self.process(messages)
        except KafkaException as exc:
            if clients.is_terminal(exc.args[0]):
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
        self.checkpoint.abort()  # first: a fenced producer fails here, and that is the failure
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
        self.checkpoint.rewind()

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
            self.checkpoint.begin()
            self.processor.dead_letter(m, Reason.INTERNAL_ERROR, error)
            self.checkpoint.advance({p: o})
        return keep

    def _close(self) -> None:
        models = len(self.models)  # before close() revokes (and drops) the partitions
        checkpoint = self.checkpoint
        try:
            if self._failed and checkpoint.in_transaction:
                checkpoint.in_transaction = False  # (a fatal error, such as fencing: none to abort)
                try:
                    if not is_fatal(self._error):
                        self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
                except KafkaException as exc:  # the run's own error says more: keep it
                    log.warning("abort_failed", error=clients.describe_error(exc.args[0]))
            if self.consumer is not None:
                self.consumer.close()  # revokes the partitions: _on_revoke commits (not after a
                # failure, whose work is left for the next owner to redo)
            if self.producer is not None:
                if checkpoint.in_transaction:
                    self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
                self.producer.flush(clients.CALL_TIMEOUT_S)
            if checkpoint.reader is not None:
                checkpoint.reader.close()
        except BaseException as exc:  # the close failed (the broker gone): a failed run too
            self._error = self._error or self._explain(exc)
            raise
        finally:
            lost = None if self.watch is None else self.watch.failure
            if self.watch is not None:
                self.watch.stop()
            self.consumer = self.producer = None  # type: ignore[assignment]  # end with the run
            checkpoint.reader = None
            self._error = lost or self._error  # the cluster's loss explains what followed
            log_end(self.summary, models, self._error)  # service_stopped, or service_failed

    # ------------------------------------------------------------------------------ the work
    def process(self, messages: Sequence[Message]) -> None:
        """Process one polled batch (:meth:`oml.processing.Processor.process`), then move each
        partition's position past it, dead letters included."""
        batch = self.processor.process(messages)
        self.checkpoint.advance(batch.last_offsets())

    def commit(self) -> None:
        """Make the work since the last commit durable (:meth:`oml.checkpoint.Checkpoint.commit`
        gives the order)."""
        self.checkpoint.commit()

    def emit_metrics(self) -> None:
        """Prequential metrics, per key for the keys that learned since the last emission and
        overall, to the metrics topic."""
        self._last_metrics = time.monotonic()
        if self.producer is None:
            return
        if self.consumer is not None:
            self.metrics.set_lag(_lags(self.consumer, self.topics.input, sorted(self._owned)))
        records = self.processor.prequential_records()
        if not records:
            return
        self.checkpoint.begin()
        produce, topic = self.producer.produce, self.topics.metrics
        for key, value in records:
            if key is None:  # the overall record: always partition 0, so it reads in order
                produce(topic, value=value, partition=0)
            else:
                produce(topic, value=value, key=key.encode())

    # ---------------------------------------------------------------------------- rebalances
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        self._owned.update(numbers)
        self.metrics.assigned(numbers, len(self._owned))
        self.metrics.set_ready(False)
        self.checkpoint.restore(numbers)
        self.metrics.set_ready(True)
        self._idle_since = time.monotonic()  # idleness counts from when there is work to do
        log.info("partitions_assigned", partitions=numbers, models=len(self.models))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        if numbers and not self._failed:
            self.checkpoint.begin()
            self.commit()
        self._revoked = True
        self._owned.difference_update(numbers)
        self.checkpoint.drop(numbers)
        self.metrics.revoked(numbers, len(self._owned))
        log.info("partitions_revoked", partitions=numbers)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        self.checkpoint.abort()
        self._revoked = True
        self._owned.difference_update(numbers)
        self.checkpoint.drop(numbers)
        self.metrics.revoked(numbers, len(self._owned), lost=True)
        log.warning("partitions_lost", partitions=numbers)


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
