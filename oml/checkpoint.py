"""The checkpoint: the work done since the last commit, and how it becomes durable.

:meth:`Checkpoint.commit` makes it durable and visible (its docstring gives the order, its body
marks the steps).  :meth:`Checkpoint.rewind` goes back to the last commit instead: it aborts the
open transaction, rebuilds the assigned partitions' models and feature cache from the changelogs
(:meth:`Checkpoint.restore`, which also runs when partitions are assigned) and seeks the
consumer to the committed offsets.  The loop rewinds after a failed batch; the checkpoint itself
rewinds after a commit that failed in a way the transaction can recover from.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from contextlib import suppress

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from oml.codecs.decoder import EventDecoder
from oml.config import TopicsConfig
from oml.kafka import clients
from oml.kafka.restore import OFFSET_HEADER, ChangelogReader, RestoreError
from oml.observability import ServiceMetrics
from oml.state.cache import CacheRecordError, FeatureCache, decode_cached, features_row
from oml.state.models import LoadError, ModelStore

log = structlog.get_logger()


class Checkpoint:
    """Input positions since the last commit, the open transaction, and the state's changelogs.

    ``producer``, ``consumer`` and ``reader`` are the run's clients (None outside a run).
    """

    def __init__(
        self,
        topics: TopicsConfig,
        models: ModelStore,
        cache: FeatureCache,
        decoder: EventDecoder,
        metrics: ServiceMetrics,
        *,
        exactly_once: bool,
    ) -> None:
        self.topics, self.models, self.cache = topics, models, cache
        self.decoder, self.metrics = decoder, metrics
        self.exactly_once = exactly_once
        self.producer: Producer = None  # type: ignore[assignment]
        self.consumer: Consumer = None  # type: ignore[assignment]
        self.reader: ChangelogReader | None = None
        self.positions: dict[int, int] = {}  # partition -> next offset, since the last commit
        self.last_offset: dict[int, int] = {}  # partition -> last offset processed
        self.in_transaction = False
        self.last_commit = time.monotonic()
        self.restored_models = self.restored_cache = 0  # records restored, over the run

    # ------------------------------------------------------------------------------ the work
    def begin(self) -> None:
        """Open a transaction (exactly-once) unless one is open."""
        if self.exactly_once and not self.in_transaction:
            self.producer.begin_transaction()
            self.in_transaction = True

    def advance(self, last_offsets: Mapping[int, int]) -> None:
        """Each partition's input up to ``last_offsets`` is processed: commit past it."""
        for p, o in last_offsets.items():
            self.positions[p] = o + 1
            self.last_offset[p] = o

    def abort(self) -> None:
        """Abort the open transaction, if any: nothing of it becomes visible."""
        if self.exactly_once and self.in_transaction:
            self.producer.abort_transaction(clients.CALL_TIMEOUT_S)
            self.in_transaction = False

    # -------------------------------------------------------------------------------- commit
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

        An abortable transaction error rewinds to the last commit (:meth:`rewind`); any other
        is raised.
        """
        if self.producer is None or self.consumer is None:
            return
        # Step 1: expire
        cache = self.cache
        before = cache.expired + cache.evicted
        cache.expire(self.last_offset)
        self.metrics.cache_expired.inc(cache.expired + cache.evicted - before)
        # Step 2: the changelogs
        self._write_changelogs()
        # Step 3: the offsets, with the writes (exactly-once) or after them (at-least-once)
        offsets = [
            TopicPartition(self.topics.input, p, offset) for p, offset in self.positions.items()
        ]
        if self.exactly_once:
            if not self.in_transaction:
                return
            try:
                if offsets:
                    self.producer.send_offsets_to_transaction(
                        offsets, self.consumer.consumer_group_metadata(), clients.CALL_TIMEOUT_S
                    )
                self.producer.commit_transaction(clients.CALL_TIMEOUT_S)
                self.in_transaction = False
            except KafkaException as exc:
                self._recover_from_failed_commit(exc)
                return
        else:
            remaining = self.producer.flush(clients.CALL_TIMEOUT_S)
            if remaining:
                raise RuntimeError(f"{remaining} records not acknowledged; offsets not committed")
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        self.positions.clear()
        self.last_commit = time.monotonic()
        self.metrics.commits.inc()
        self.metrics.cache_size.set(len(self.cache))
        self.metrics.models.set(len(self.models))

    def _write_changelogs(self) -> None:
        models, produce = self.models, self.producer.produce
        for partition, key, value, offset in models.take_changes():
            produce(
                self.topics.models, value=value, key=key.encode(), partition=partition,
                headers=[(OFFSET_HEADER, str(offset).encode())],
            )
        for partition, event_id, entry, offset in self.cache.take_changes(models.bank.features):
            produce(
                self.topics.cache, value=entry, key=event_id.encode(), partition=partition,
                headers=[(OFFSET_HEADER, str(offset).encode())],
            )

    def _recover_from_failed_commit(self, exc: KafkaException) -> None:
        """An abortable transaction error: abort, then rebuild state and positions from what
        is committed, as after a restart.  Anything else, fencing included, is fatal."""
        error = exc.args[0]
        if not error.txn_requires_abort() or clients.is_terminal(error):
            raise exc
        log.warning("transaction_aborted", error=clients.describe_error(error))
        self.in_transaction = True  # still open: aborted next
        self.rewind()

    # -------------------------------------------------------------------------------- rewind
    def rewind(self) -> None:
        """Abort the open transaction, then rebuild state and positions from what is
        committed, as after a restart."""
        self.abort()
        self.metrics.aborts.inc()
        assigned = [tp.partition for tp in self.consumer.assignment()]
        self.drop(assigned)
        committed = self.restore(assigned)
        for p, offset in committed.items():
            self.consumer.seek(TopicPartition(self.topics.input, p, max(offset, 0)))

    def drop(self, partitions: Sequence[int]) -> None:
        """Forget the partitions' state and positions (their changelogs keep the state)."""
        for p in partitions:
            self.models.drop_partition(p)
            self.cache.drop_partition(p)
            self.positions.pop(p, None)
            self.last_offset.pop(p, None)

    # ------------------------------------------------------------------------------- restore
    def restore(self, partitions: Sequence[int]) -> dict[int, int]:
        """Rebuild each partition's models and feature cache from its changelogs, before any of
        its input is processed; return the committed input offsets.

        The last record per key wins and a null deletes, reading ``read_committed`` to the end
        of the partition (:meth:`ChangelogReader.latest`).  Records that follow from input at or
        past the group's committed offset are left out: they belong to work that was never
        committed (a broker that shows aborted transactions, or an at-least-once write whose
        offsets never made it), and that input will be processed again.  A record that cannot
        be decoded stops the service (:class:`RestoreError`), naming it.
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
            self.last_offset[p] = limit - 1
            models, cached = self._restore_partition(p, limit)
            self.restored_models += models
            self.restored_cache += cached
            self.metrics.restore_finished(p)
            log.info("partition_restored", partition=p, models=models, cached=cached,
                     committed_offset=limit)
        self.metrics.models.set(len(self.models))
        self._restore_feature_space()
        return {p: committed.get(p, 0) for p in partitions}

    def _restore_partition(self, p: int, limit: int) -> tuple[int, int]:
        """One partition's models and cache entries; how many of each."""
        t, reader = self.topics, self.reader
        assert reader is not None, "restore runs inside a run"

        def progress(n: int) -> None:
            self.metrics.add_restored(p, n)

        models = reader.latest(t.models, p, before=limit, progress=progress)
        records = []
        for key, (value, offset) in models.items():
            try:
                records.append((key.decode(), value))
            except UnicodeDecodeError as exc:
                raise RestoreError(
                    f"model state for key {key!r} in {t.models} partition {p} at offset "
                    f"{offset} cannot be decoded: {exc}"
                ) from exc
        try:
            self.models.load_many(p, records)
        except LoadError as exc:
            key, (_, offset) = list(models.items())[exc.index]
            raise RestoreError(
                f"model state for key {key!r} in {t.models} partition {p} at offset "
                f"{offset} cannot be decoded: {exc.cause}"
            ) from exc.cause
        bank = self.models.bank
        restored = []
        for key, (value, offset) in reader.latest(t.cache, p, before=limit,
                                                  progress=progress).items():
            try:
                record = decode_cached(value)
            except CacheRecordError as exc:
                raise RestoreError(
                    f"feature-cache record for event {key!r} in {t.cache} partition {p} at "
                    f"offset {offset} cannot be decoded: {exc}"
                ) from exc
            restored.append((key.decode(), record, features_row(record, bank)))
        self.cache.restore(p, restored)
        return len(models), len(restored)

    def _restore_feature_space(self) -> None:
        """Tell the decoder what the restored models already know: their feature names (which
        count against ``model.max_features``) and, for list-shaped features (named by position
        ``"0"``..``"n-1"``), their length, so that no first list after a restart can set it."""
        decoder, names = self.decoder, [str(f) for f in self.models.bank.features]
        decoder.restore_feature_names(names)
        if names and decoder.n_features is None and set(names) == set(map(str, range(len(names)))):
            with suppress(ValueError):  # a configured model.n_features wins
                decoder.restore_feature_count(len(names))
