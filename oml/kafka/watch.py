"""Watching that the cluster still holds what the service's state was built from.

A broker restarted empty, a topic deleted or recreated, a cluster swapped under the same
address: the service's models and cache then describe a log that no longer exists, and going on
would serve state that matches nothing (or hang: a transaction whose topic is gone never
commits).  :class:`BrokerWatch` looks every ``interval_s`` seconds, on a thread of its own with
its own admin client (the service's consumer and producer are never touched off the loop's
thread), at:

1. the cluster id: the one seen at start;
2. every topic of the service (input, changelogs, outputs): still there, with the partition
   count seen at start;
3. the input's committed offsets: never below what the group had committed before (offsets
   gone: a broker restarted empty forgets them with its topics).  The end offsets are not
   compared with them: Tansu 0.6 answers ``ListOffsets`` with ends below offsets already
   consumed and committed (seen: end 801 against a committed 1000), which would stop a
   healthy service.

The first mismatch is kept as a :class:`~oml.lifecycle.BrokerLost`: logged once as an error
(``broker_lost``), ``/healthz`` turned unhealthy (``metrics.set_failed``), and the service
stopped; the loop raises it at its next turn (:meth:`BrokerWatch.check`), so the run ends with
``service_failed`` and exit code 7.  A check that gets no answer (the broker restarting, the
network) decides nothing: the next one looks again.

librdkafka itself may notice first.  On the embedded broker (Tansu 0.6) with librdkafka 2.16,
deleting the *input* topic under a subscribed consumer crashes librdkafka's own thread
(``rd_kafka_metadata_cache_find``) within about 0.1 s of the deletion, faster than any check
can run; on Apache Kafka the consumer reports the topic gone and the watch names it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from oml.lifecycle import BrokerLost

if TYPE_CHECKING:
    from oml.observability import ServiceMetrics

__all__ = ["CHECK_INTERVAL_S", "BrokerWatch"]

log = structlog.get_logger()

CHECK_INTERVAL_S = 2.0
"""Seconds between two checks of the cluster."""


class BrokerWatch:
    """Checks the cluster every ``interval_s`` on a daemon thread (see the module docstring).

    Args:
        admin: an admin client of its own (the watch calls it from its thread).
        group_id: the service's consumer group.
        input_topic: the input topic (its committed offsets are checked).
        topics: every topic of the service, the input among them.
        metrics: the service's metrics: a failure turns them (and ``/healthz``) unhealthy.
        stop: asks the service's loop to stop (called from the watch's thread: a flag).
        interval_s: seconds between checks.
    """

    def __init__(
        self,
        admin: AdminClient,
        group_id: str,
        input_topic: str,
        topics: Sequence[str],
        metrics: ServiceMetrics | None = None,
        stop: Callable[[], object] | None = None,
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.admin = admin
        self.group_id = group_id
        self.input = input_topic
        self.topics = list(dict.fromkeys([input_topic, *topics]))
        self.metrics = metrics
        self.stop_service = stop
        self.interval_s = interval_s
        self.failure: BrokerLost | None = None
        self.checks = 0
        self._cluster_id: str | None = None
        self._partitions: dict[str, int] = {}
        self._committed: dict[int, int] = {}  # the highest committed offset seen per partition
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -------------------------------------------------------------------------------- running
    def start(self) -> BrokerWatch:
        """Take the first look now (what the cluster holds at start), then watch on a thread."""
        self.look()
        self._thread = threading.Thread(target=self._run, daemon=True, name="oml-broker-watch")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.interval_s + 15)
        self._thread = None

    def check(self) -> None:
        """Raise the failure found, if any (the loop calls this once per turn: a read)."""
        if self.failure is not None:
            raise self.failure

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s) and self.failure is None:
            try:
                self.look()
            except Exception as exc:  # the watch must never die silently
                log.warning("broker_watch_error", error=f"{type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------- checking
    def look(self) -> BrokerLost | None:
        """One check; the failure it found (also kept, logged and reported), or None."""
        if self.failure is not None:
            return self.failure
        problem = self._look()
        self.checks += 1
        if problem is None:
            return None
        self.failure = BrokerLost(
            f"{problem}; the service's state no longer matches the cluster's log, so it stops "
            "rather than serve it: if the broker lost its data, reset the group and recreate "
            "the service's topics (or restore them) before starting again"
        )
        log.error("broker_lost", error=str(self.failure))
        if self.metrics is not None:
            self.metrics.set_failed(str(self.failure))
        if self.stop_service is not None:
            self.stop_service()
        return self.failure

    def _look(self) -> str | None:
        timeout = max(self.interval_s, 5.0)
        try:
            metadata = self.admin.list_topics(timeout=timeout)
        except KafkaException:
            return None  # no answer decides nothing
        if self._cluster_id is None:
            self._cluster_id = metadata.cluster_id
        elif metadata.cluster_id != self._cluster_id:
            return (f"the cluster id changed from {self._cluster_id!r} to "
                    f"{metadata.cluster_id!r}: the broker was replaced or restarted empty")
        for name in self.topics:
            topic = metadata.topics.get(name)
            n = None if topic is None or topic.error is not None else len(topic.partitions)
            seen = self._partitions.get(name)
            if n is None:
                if seen is not None or name == self.input:
                    return f"topic {name!r} is gone from the cluster"
                continue
            if seen is None:
                self._partitions[name] = n
            elif n != seen:
                return (f"topic {name!r} has {n} partitions, not the {seen} it had: it was "
                        "deleted and created again")
        return self._look_at_offsets(timeout)

    def _look_at_offsets(self, timeout: float) -> str | None:
        n = self._partitions.get(self.input)
        if not n:
            return None
        request = [ConsumerGroupTopicPartitions(
            self.group_id, [TopicPartition(self.input, p) for p in range(n)]
        )]
        try:
            answer: Any = self.admin.list_consumer_group_offsets(
                request, request_timeout=timeout)[self.group_id].result(timeout + 1)
            committed = {tp.partition: tp.offset for tp in answer.topic_partitions
                         if tp.error is None}
        except (KafkaException, TimeoutError):
            return None
        for p, offset in sorted(committed.items()):
            before = self._committed.get(p)
            if before is not None and offset < before:
                shown = "none" if offset < 0 else offset
                return (f"the group {self.group_id!r} had committed offset {before} on "
                        f"{self.input} partition {p}, and now the cluster has {shown}: its "
                        "committed offsets were lost or reset")
            if offset >= 0:
                self._committed[p] = max(before or 0, offset)
        return None
