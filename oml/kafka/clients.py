"""librdkafka configurations for every client oml runs, and Kafka errors in plain words.

Each builder returns a plain ``dict`` for ``confluent_kafka.Consumer`` / ``Producer`` /
``AdminClient``.  The user's passthrough settings (``[kafka.librdkafka]``: any librdkafka setting,
SASL and TLS included) are merged *last*, so a user can override anything, oml's choices too; an
override of a setting that exactly-once depends on is logged as a warning.

>>> conf = consumer_config("localhost:9092", "fraud", {"session.timeout.ms": 6000})
>>> conf["group.id"], conf["isolation.level"], conf["session.timeout.ms"]
('fraud', 'read_committed', 6000)
>>> transactional_producer_config("localhost:9092", "fraud", "pod-0")["transactional.id"]
'fraud-pod-0'

Choices worth knowing:

* ``partition.assignment.strategy=cooperative-sticky``: a rebalance moves only the partitions
  that change owner, so the others keep their models in memory instead of restoring them from
  the changelogs.  (Measured on Tansu 0.6: it works, but a member joining needs two rebalance
  rounds of ``session.timeout.ms / 2`` each, against one for ``range``.)
* ``fetch.queue.backoff.ms=10``: with batch consume (``consume(n, timeout)``) the default backoff
  leaves the client idle between fetches.
* ``fetch.wait.max.ms=100`` (librdkafka: 500): Kafka answers a waiting fetch as soon as data
  arrives, Tansu does not; measured on Tansu 0.6, a record reaches a consumer at the end of the
  partition in ~11 ms median instead of ~113 ms.  On Kafka it only means more empty fetches
  while idle (10/s per broker).
* Producers are idempotent (``acks=all``), compress with lz4, and linger 10 ms to batch (a
  commit flushes them anyway).
* ``transaction.timeout.ms=10000`` (producer default 60 s, broker maximum 15 min): a transaction
  left open by a killed instance holds back every ``read_committed`` reader of the partitions it
  wrote (outputs and changelogs) until the broker aborts it; the service commits every second,
  so ten seconds is ample.  Every blocking call the service makes (``init_transactions``,
  ``send_offsets_to_transaction``, ``commit_transaction``, ``abort_transaction``, ``flush``) is
  given :data:`CALL_TIMEOUT_S`.
* A pinned ``kafka.instance_id`` is also the consumer's ``group.instance.id`` (static
  membership): a restarted instance takes back its partitions without a rebalance of the group.
  The default instance id is unique per process, and then membership is dynamic.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Mapping
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException

from oml.logs import librdkafka_logger

__all__ = [
    "CALL_TIMEOUT_S",
    "SECRET_SETTINGS",
    "TRANSACTION_TIMEOUT_MS",
    "admin_config",
    "consumer_config",
    "default_instance_id",
    "describe_error",
    "kafka_error",
    "log_kafka_error",
    "producer_config",
    "redact",
    "restore_consumer_config",
    "transactional_id",
    "transactional_producer_config",
]

log = structlog.get_logger()

Settings = Mapping[str, Any]

TRANSACTION_TIMEOUT_MS = 10_000
"""``transaction.timeout.ms`` of the exactly-once producer: how long the broker lets a transaction
stay open before it aborts it (a killed instance's transaction holds back ``read_committed``
readers that long).  Kafka's producer default is 60 s; brokers cap it at
``transaction.max.timeout.ms`` (15 min by default)."""

CALL_TIMEOUT_S = 10.0
"""The bound on each blocking client call of the service (``init_transactions``,
``send_offsets_to_transaction``, ``commit_transaction``, ``abort_transaction``, ``flush``): a
broker that does not answer makes the call raise instead of hanging the loop."""

# Settings the delivery guarantee rests on: overriding them is allowed, but said out loud.
_GUARANTEE_SETTINGS = frozenset(
    {
        "enable.auto.commit",
        "isolation.level",
        "transactional.id",
        "enable.idempotence",
        "acks",
        "enable.partition.eof",
    }
)

# Substrings of setting names whose values must never be printed or logged.
SECRET_SETTINGS = ("password", "secret", "sasl.jaas.config", "ssl.key.pem", "token")

_PRODUCER_BASE: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 10,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 500_000,
    # Java's default partitioner (murmur2), not librdkafka's crc32: a key's predictions and dead
    # letters land in the partition number a Java, Kafka Streams or `oml produce` producer puts
    # the key's input in.
    "partitioner": "murmur2_random",
    # Kafka's broker default (message.max.bytes = 1 MiB + 12); librdkafka's own default is
    # 1,000,000, below what the broker accepts, so a record the input held might not be
    # producible again.  Dead letters are cut to fit (oml.kafka.deadletter).
    "message.max.bytes": 1_048_588,
}


def _merge(role: str, base: dict[str, Any], overrides: Settings | None) -> dict[str, Any]:
    """``base`` updated by ``overrides`` (the user's passthrough wins)."""
    conf = dict(base)
    for name, value in (overrides or {}).items():
        if name in _GUARANTEE_SETTINGS and name in conf and conf[name] != value:
            log.warning(
                "kafka_setting_overridden", client=role, setting=name, ours=conf[name], yours=value
            )
        conf[name] = value
    return conf


def _common(bootstrap_servers: str, client_id: str) -> dict[str, Any]:
    if not bootstrap_servers:
        raise ValueError("bootstrap_servers is empty: name at least one host:port")
    return {
        "bootstrap.servers": bootstrap_servers,
        "client.id": client_id,
        "error_cb": log_kafka_error,
        "logger": librdkafka_logger(),  # librdkafka's own lines: through our logs, throttled
    }


def default_instance_id() -> str:
    """An id unique to this process: ``{host}-{pid}-{random}``.

    Two instances on one host never fence each other by default.  The price: a restarted
    process has another id, so it neither fences its previous incarnation nor takes back its
    partitions as a static member; pin ``kafka.instance_id`` (a StatefulSet's pod name) for that.

    >>> a, b = default_instance_id(), default_instance_id()
    >>> a != b and a.split("-")[-2] == str(os.getpid())
    True
    """
    return f"{socket.gethostname() or 'oml'}-{os.getpid()}-{secrets.token_hex(3)}"


def transactional_id(group_id: str, instance_id: str) -> str:
    """The ``transactional.id`` of one service instance: ``{group_id}-{instance_id}``.

    It must be unique among the group's running instances and the same after a restart, so a
    restarted instance fences its previous incarnation and aborts its open transaction at once.
    """
    if not group_id or not instance_id:
        raise ValueError("a transactional id needs a non-empty group id and instance id")
    return f"{group_id}-{instance_id}"


def consumer_config(
    bootstrap_servers: str,
    group_id: str,
    overrides: Settings | None = None,
    *,
    partition_eof: bool = False,
    client_id: str = "oml",
    instance_id: str | None = None,
) -> dict[str, Any]:
    """The service's input consumer: a group member that never commits on its own.

    Offsets are committed by the service only: inside the producer's transaction
    (exactly-once) or explicitly after the producer flushed (at-least-once).  It reads only
    committed records, and a group with no committed offset starts at the earliest record.
    ``partition_eof`` makes the consumer report the end of each partition (for bounded runs).
    ``instance_id`` (a pinned ``kafka.instance_id``) makes it a static member of the group
    (``group.instance.id``): restarted within ``session.timeout.ms``, it gets its partitions back
    without a rebalance; stopped, its partitions move only when that session expires.

    >>> consumer_config("k:9092", "fraud", instance_id="pod-0")["group.instance.id"]
    'pod-0'
    """
    base = {
        **_common(bootstrap_servers, client_id),
        "group.id": group_id,
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": partition_eof,
        "partition.assignment.strategy": "cooperative-sticky",
        "fetch.queue.backoff.ms": 10,
        "fetch.wait.max.ms": 100,
    }
    if instance_id:
        base["group.instance.id"] = instance_id
    return _merge("consumer", base, overrides)


def transactional_producer_config(
    bootstrap_servers: str,
    group_id: str,
    instance_id: str,
    overrides: Settings | None = None,
    *,
    client_id: str = "oml",
) -> dict[str, Any]:
    """The exactly-once producer: idempotent, with ``transactional.id`` from group and instance.

    Outputs, changelog writes and the input offsets are committed together by
    ``send_offsets_to_transaction`` + ``commit_transaction``.
    """
    base = {
        **_common(bootstrap_servers, client_id),
        **_PRODUCER_BASE,
        "transactional.id": transactional_id(group_id, instance_id),
        "transaction.timeout.ms": TRANSACTION_TIMEOUT_MS,
    }
    return _merge("transactional_producer", base, overrides)


def producer_config(
    bootstrap_servers: str,
    overrides: Settings | None = None,
    *,
    client_id: str = "oml",
) -> dict[str, Any]:
    """The at-least-once producer: idempotent (no duplicates or reordering from its own retries),
    ``acks=all``; the service flushes it before committing offsets."""
    base = {**_common(bootstrap_servers, client_id), **_PRODUCER_BASE}
    return _merge("producer", base, overrides)


def restore_consumer_config(
    bootstrap_servers: str,
    overrides: Settings | None = None,
    *,
    client_id: str = "oml-restore",
    group_id: str = "oml-restore",
) -> dict[str, Any]:
    """A consumer for reading changelog partitions from the beginning to their end.

    Used with ``assign`` only, never ``subscribe``: it joins no group and commits nothing
    (librdkafka insists on a ``group.id`` all the same).  It reads committed records only and
    reports the end of each partition (``enable.partition.eof``), which is how the end is found:
    not from watermarks.  ``fetch.wait.max.ms`` is short because the last fetch, the one that
    finds nothing more, waits that long.
    """
    base = {
        **_common(bootstrap_servers, client_id),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        "enable.partition.eof": True,
        "fetch.queue.backoff.ms": 10,
        "fetch.wait.max.ms": 20,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
    }
    return _merge("restore_consumer", base, overrides)


def admin_config(
    bootstrap_servers: str,
    overrides: Settings | None = None,
    *,
    client_id: str = "oml-admin",
) -> dict[str, Any]:
    """An ``AdminClient``; it never asks the broker to auto-create a topic by looking it up."""
    base = {**_common(bootstrap_servers, client_id), "allow.auto.create.topics": False}
    return _merge("admin", base, overrides)


def redact(config: Settings) -> dict[str, Any]:
    """A copy fit to print or log: secrets masked, callables named.

    >>> redact({"sasl.password": "hunter2", "acks": "all"})
    {'sasl.password': '***', 'acks': 'all'}
    """
    out: dict[str, Any] = {}
    for name, value in config.items():
        if any(secret in name for secret in SECRET_SETTINGS):
            out[name] = "***"
        elif callable(value):
            out[name] = f"<{getattr(value, '__name__', type(value).__name__)}>"
        else:
            out[name] = value
    return out


# ------------------------------------------------------------------------------------ errors

FENCED_HINT = (
    "another instance started with this instance's transactional id ({group_id}-{instance_id}) "
    "and fenced it: give each running instance its own kafka.instance_id (--set "
    "kafka.instance_id=NAME), or leave it unset for an id unique to each process"
)

FENCED_CODES = frozenset({
    KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH,
    KafkaError.FENCED_INSTANCE_ID,
})
"""Errors that mean another instance took this one's identity: the instance must stop."""

_TERMINAL_CODES = FENCED_CODES | {KafkaError._FATAL}  # _FATAL: any call after a fatal error


def is_terminal(error: KafkaError) -> bool:
    """Whether the client can do no more after ``error``: a fatal error, or a fenced one.

    A fenced producer's error can come flagged as merely abortable (Tansu, when the fencing
    reaches ``send_offsets_to_transaction``), but its abort fails too: a stale epoch cannot
    end a transaction, so the only way on is to stop.

    >>> is_terminal(KafkaError(KafkaError._FENCED)), is_terminal(KafkaError(KafkaError._TIMED_OUT))
    (True, False)
    """
    return bool(error.fatal()) or error.code() in _TERMINAL_CODES


_HINTS: dict[int, str] = {
    KafkaError._ALL_BROKERS_DOWN: "no broker can be reached: check bootstrap.servers, the "
    "network, and security.protocol / TLS / SASL settings",
    KafkaError._TRANSPORT: "the connection to a broker failed: check bootstrap.servers and "
    "security.protocol (a TLS listener refuses plaintext and the other way round)",
    KafkaError._RESOLVE: "a broker host name does not resolve: check bootstrap.servers and the "
    "brokers' advertised listeners",
    KafkaError._AUTHENTICATION: "authentication failed: check sasl.mechanism, sasl.username / "
    "sasl.password and the TLS settings",
    KafkaError.SASL_AUTHENTICATION_FAILED: "SASL authentication failed: check sasl.mechanism, "
    "sasl.username and sasl.password",
    KafkaError._SSL: "TLS failed: check ssl.ca.location and the certificate settings",
    KafkaError.TOPIC_AUTHORIZATION_FAILED: "this principal may not use the topic: grant it "
    "(Read on the input, Write on the outputs and changelogs, Create to let oml create them)",
    KafkaError.GROUP_AUTHORIZATION_FAILED: "this principal may not use the consumer group: "
    "grant Read on the group",
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "this principal may not use its "
    "transactional id: grant Write on the transactional id (prefix: the group id)",
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: "this principal lacks a cluster permission "
    "(IdempotentWrite, or Create for topics)",
    KafkaError._FENCED: FENCED_HINT,
    KafkaError.PRODUCER_FENCED: FENCED_HINT,
    KafkaError.INVALID_PRODUCER_EPOCH: FENCED_HINT,
    KafkaError.FENCED_INSTANCE_ID: "another consumer joined the group with this instance's "
    "group.instance.id (a pinned kafka.instance_id): give each running instance its own "
    "kafka.instance_id",
    KafkaError.COORDINATOR_NOT_AVAILABLE: "the group or transaction coordinator is not available "
    "yet; on a one-broker cluster, transaction.state.log.replication.factor and "
    "offsets.topic.replication.factor must be 1",
    KafkaError.NOT_ENOUGH_REPLICAS: "fewer in-sync replicas than min.insync.replicas: the "
    "cluster is degraded, or the topic's replication factor is below min.insync.replicas",
    KafkaError.UNKNOWN_TOPIC_OR_PART: "the topic or partition does not exist (oml creates its "
    "output and changelog topics at start; the input topic must exist)",
    KafkaError._UNKNOWN_TOPIC: "the topic does not exist",
    KafkaError._UNKNOWN_PARTITION: "the partition does not exist",
    KafkaError._MSG_TIMED_OUT: "a record was not acknowledged within message.timeout.ms: the "
    "brokers are unreachable or overloaded",
    KafkaError.MSG_SIZE_TOO_LARGE: "a record is larger than the topic's max.message.bytes: raise "
    "it on the topic (and message.max.bytes on the producer)",
    KafkaError._TIMED_OUT: "the request timed out: the brokers are unreachable or overloaded",
    KafkaError._MAX_POLL_EXCEEDED: "the consumer did not poll within max.poll.interval.ms and "
    "left the group: a batch took too long, so lower the batch size or raise the interval",
    KafkaError.INVALID_TRANSACTION_TIMEOUT: "transaction.timeout.ms is above the broker's "
    "transaction.max.timeout.ms: lower it",
    KafkaError.UNSUPPORTED_VERSION: "the broker does not support a request this client needs "
    "(transactions need Kafka 2.5 or later)",
    KafkaError._INVALID_ARG: "an invalid argument or setting",
}


def kafka_error(error: KafkaError | BaseException) -> KafkaError | None:
    if isinstance(error, KafkaError):
        return error
    if isinstance(error, KafkaException) and error.args and isinstance(error.args[0], KafkaError):
        return error.args[0]
    return None


def describe_error(error: KafkaError | BaseException, context: str = "") -> str:
    """A ``KafkaError`` or ``KafkaException`` as one sentence a user can act on.

    >>> print(describe_error(KafkaError(KafkaError._ALL_BROKERS_DOWN), "connecting"))
    connecting: Local: All broker connections are down [_ALL_BROKERS_DOWN]; no broker can be \
reached: check bootstrap.servers, the network, and security.protocol / TLS / SASL settings
    """
    err = kafka_error(error)
    prefix = f"{context}: " if context else ""
    if err is None:
        return f"{prefix}{error}"
    text = f"{prefix}{err.str() or err.name()} [{err.name()}]"
    hint = _HINTS.get(err.code())
    if hint:
        text += f"; {hint}"
    flags = [
        name
        for name, on in (
            ("fatal", err.fatal()),
            ("retriable", err.retriable()),
            ("the transaction must be aborted", err.txn_requires_abort()),
        )
        if on
    ]
    if flags:
        text += f" ({', '.join(flags)})"
    return text


class FirstFatal:
    """An ``error_cb`` that logs (:func:`log_kafka_error`) and keeps the first fatal error.

    After a fatal error librdkafka answers every call with ``_FATAL`` ("Local: Fatal error"),
    or with whatever state the error left (``_STATE``, a timed-out abort), which says nothing
    of the cause; the cause (fenced, for one) came through ``error_cb``.
    """

    def __init__(self) -> None:
        self.error: KafkaError | None = None

    def __call__(self, error: KafkaError) -> None:
        log_kafka_error(error)
        if error.fatal() and self.error is None:
            self.error = error

    def learn_from(self, call: Any, *args: Any) -> None:
        """Make ``call`` (a client API that reports a fatal error: ``abort_transaction``, or a
        ``poll`` that serves ``error_cb``) and keep the fatal error it raises, if any."""
        try:
            call(*args)
        except KafkaException as exc:
            error = kafka_error(exc)
            if error is not None and error.fatal() and self.error is None:
                self.error = error
        except Exception as exc:  # the run's own error says more
            log.debug("fatal_error_lookup_failed", error=f"{type(exc).__name__}: {exc}")

    def explain(self, exc: BaseException) -> BaseException:
        """The fatal error, if a client reported one: it is the cause of what failed after it
        (a bare ``_FATAL``, or an ``_STATE`` from a transaction its fencing broke); else ``exc``."""
        if self.error is not None and kafka_error(exc) is not None:
            return KafkaException(self.error)
        return exc


def log_kafka_error(error: KafkaError) -> None:
    """librdkafka's ``error_cb``: client-level errors (brokers down, authentication) as log events.

    Most are transient (librdkafka retries); a fatal one is logged as a warning here and must
    stop the service, which sees it on its next call and names it in its ``service_failed``
    error line.
    """
    if error.fatal():  # the service restates it in its service_failed line
        log.warning("kafka_fatal_error", error=describe_error(error), code=error.name())
    elif error.code() in (KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN):
        log.warning("kafka_connection_error", error=describe_error(error), code=error.name())
    else:
        log.warning("kafka_error", error=describe_error(error), code=error.name())
