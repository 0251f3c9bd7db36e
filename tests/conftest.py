"""Shared fixtures: one Kafka broker for the whole session, and helpers to use it.

The cluster is chosen by environment, as in confluent-kafka-python's integration tests:

* ``OML_BOOTSTRAP_SERVERS=host:port[,...]`` runs every broker test against that cluster;
  ``OML_KAFKA_CONFIG`` may add librdkafka settings for it as JSON
  (``{"security.protocol": "SASL_SSL", ...}``).
* Otherwise one embedded Tansu broker (:class:`oml.kafka.broker.EmbeddedBroker`) is started on
  first use and stopped at the end of the session.

Broker tests are marked ``@pytest.mark.broker`` and name topics with :func:`new_topic`, which
makes every name unique, so tests never see each other's records, on a shared cluster too.
"""

from __future__ import annotations

import gc
import json
import os
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from txlog import committed_offsets, read_batches

from oml.kafka.broker import EmbeddedBroker

ENV_BOOTSTRAP = "OML_BOOTSTRAP_SERVERS"
ENV_CONFIG = "OML_KAFKA_CONFIG"

# Not a module to collect doctests from: under --doctest-modules it would be imported a second
# time as "conftest", clashing with the conftest.py files of the subdirectories.
collect_ignore = ["conftest.py"]


@dataclass(frozen=True)
class Record:
    """A record as read by :func:`read_all`."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    timestamp: int

    def header(self, name: str) -> str | None:
        """The last header called ``name`` as text (the last wins, as on a dead letter that
        failed again), or None if there is none."""
        value = dict(self.headers).get(name)
        return None if value is None else value.decode()


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker | None]:
    """The session's embedded broker, or None when ``OML_BOOTSTRAP_SERVERS`` names a cluster."""
    if os.environ.get(ENV_BOOTSTRAP, "").strip():
        yield None
        return
    with EmbeddedBroker() as broker:
        yield broker
        gc.collect()  # let clients the tests left behind go before their broker does


@pytest.fixture(scope="session")
def bootstrap_servers(embedded_broker: EmbeddedBroker | None) -> str:
    """``bootstrap.servers`` of the session's cluster."""
    if embedded_broker is None:
        return os.environ[ENV_BOOTSTRAP].strip()
    return embedded_broker.bootstrap_servers


@pytest.fixture(scope="session")
def kafka_config(bootstrap_servers: str) -> dict[str, Any]:
    """librdkafka settings every test client starts from: bootstrap servers plus
    ``OML_KAFKA_CONFIG`` (security settings of an external cluster)."""
    extra = json.loads(os.environ.get(ENV_CONFIG, "") or "{}")
    if not isinstance(extra, dict):
        raise pytest.UsageError(f"{ENV_CONFIG} must be a JSON object of librdkafka settings")
    return {**extra, "bootstrap.servers": bootstrap_servers}


@pytest.fixture(scope="session")
def kafka_admin(kafka_config: dict[str, Any]) -> Iterator[AdminClient]:
    # pytest keeps fixture values on the test items until the session ends, so this client
    # outlives the embedded broker: keep its reconnect attempts out of the log (errors only
    # at CRIT and above; failures still raise through the futures the tests wait on).
    admin = AdminClient({**kafka_config, "allow.auto.create.topics": False, "log_level": 2})
    yield admin


@pytest.fixture
def new_topic(
    kafka_admin: AdminClient, request: pytest.FixtureRequest
) -> Callable[..., str]:
    """Factory: ``new_topic(partitions=1, config=None, prefix=None) -> name``.

    Creates a topic named ``{prefix or test name}-{uuid}`` and waits until metadata shows it.
    Topics are left behind (the embedded broker forgets them at the end of the session).
    """
    base = re.sub(r"[^a-zA-Z0-9._-]+", "-", request.node.name).strip("-")[:60]

    def make(
        partitions: int = 1, config: Mapping[str, str] | None = None, prefix: str | None = None
    ) -> str:
        name = f"{prefix or base}-{uuid.uuid4().hex[:12]}"
        futures = kafka_admin.create_topics(
            [NewTopic(name, partitions, -1, config=dict(config or {}))], request_timeout=30
        )
        futures[name].result()
        deadline = time.monotonic() + 30
        while True:
            topic = kafka_admin.list_topics(timeout=10).topics.get(name)
            if topic is not None and len(topic.partitions) == partitions:
                return name
            if time.monotonic() > deadline:
                raise TimeoutError(f"topic {name} not in metadata 30s after creation")
            time.sleep(0.05)

    return make


@pytest.fixture
def produce_records(kafka_config: dict[str, Any]) -> Callable[..., None]:
    """Helper: ``produce_records(topic, records, partition=None, **producer_settings)``.

    ``records`` are ``(key, value)`` or ``(key, value, headers)`` tuples; everything is flushed
    before it returns, and a delivery error fails the test.
    """

    def send(
        topic: str,
        records: Iterable[tuple[Any, ...]],
        partition: int | None = None,
        **settings: Any,
    ) -> None:
        producer = Producer({**kafka_config, "linger.ms": 5, **settings})
        errors: list[str] = []

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for record in records:
            key, value, *rest = record
            kwargs: dict[str, Any] = {"key": key, "value": value, "on_delivery": on_delivery}
            if rest:
                kwargs["headers"] = rest[0]
            if partition is not None:
                kwargs["partition"] = partition
            while True:
                try:
                    producer.produce(topic, **kwargs)
                    break
                except BufferError:
                    producer.poll(0.05)
        left = producer.flush(30)
        assert left == 0, f"{left} records not delivered to {topic}"
        assert not errors, f"delivery errors: {errors[:5]}"

    return send


@pytest.fixture
def read_all(kafka_config: dict[str, Any]) -> Callable[..., list[Record]]:
    """Helper: ``read_all(topic, isolation="read_committed", timeout=30) -> [Record]``.

    Reads every partition of ``topic`` from the beginning to its end (partition EOF, not
    watermarks), records sorted by partition and offset.
    """

    def read(
        topic: str, isolation: str = "read_committed", timeout: float = 30.0
    ) -> list[Record]:
        consumer = Consumer(
            {
                **kafka_config,
                "group.id": f"oml-test-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "isolation.level": isolation,
                "fetch.queue.backoff.ms": 10,
                "fetch.wait.max.ms": 100,
            }
        )
        try:
            metadata = consumer.list_topics(topic, timeout=10).topics[topic]
            if metadata.error is not None:
                raise AssertionError(f"cannot read {topic}: {metadata.error}")
            partitions = sorted(metadata.partitions)
            consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
            pending = set(partitions)
            out: list[Record] = []
            deadline = time.monotonic() + timeout
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{topic}: no end of partitions {sorted(pending)}")
                for m in consumer.consume(1000, 0.2):
                    error = m.error()
                    if error is None:
                        out.append(
                            Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                                   list(m.headers() or []), m.timestamp()[1])
                        )
                    elif error.code() == KafkaError._PARTITION_EOF:
                        pending.discard(m.partition())
                    else:
                        raise AssertionError(f"consuming {topic}: {error}")
            return sorted(out, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()

    return read


@pytest.fixture
def read_committed(read_all: Callable[..., list[Record]], bootstrap_servers: str,
                   embedded_broker: EmbeddedBroker | None) -> Callable[[str], list[Record]]:
    """Helper: ``read_committed(topic) -> [Record]``, only what committed transactions wrote
    (and what was written outside one).

    On an external cluster that is what ``read_committed`` reads.  The embedded broker also
    shows aborted records to ``read_committed`` readers, so there each partition's log is read
    for its transaction markers (:mod:`txlog`) and the aborted and still-open records dropped.
    """

    def read(topic: str) -> list[Record]:
        records = read_all(topic)
        if embedded_broker is None:
            return records
        kept = {p: committed_offsets(read_batches(bootstrap_servers, topic, p))
                for p in {r.partition for r in records}}
        return [r for r in records if r.offset in kept[r.partition]]

    return read
