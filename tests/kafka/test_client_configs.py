"""Config builders: oml's settings, the user's passthrough on top, errors in plain words."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from structlog.testing import capture_logs

from oml.exits import Exit
from oml.kafka.clients import (
    FirstFatal,
    admin_config,
    consumer_config,
    describe_error,
    is_terminal,
    log_kafka_error,
    producer_config,
    redact,
    restore_consumer_config,
    transactional_id,
    transactional_producer_config,
)
from oml.lifecycle import failure_of, is_fatal

BOOT = "localhost:1"


def test_consumer_defaults() -> None:
    conf = consumer_config(BOOT, "fraud")
    assert conf["bootstrap.servers"] == BOOT
    assert conf["group.id"] == "fraud"
    assert conf["enable.auto.commit"] is False
    assert conf["isolation.level"] == "read_committed"
    assert conf["auto.offset.reset"] == "earliest"
    assert conf["enable.partition.eof"] is False
    assert conf["partition.assignment.strategy"] == "cooperative-sticky"
    assert conf["fetch.queue.backoff.ms"] <= 10
    assert consumer_config(BOOT, "g", partition_eof=True)["enable.partition.eof"] is True


def test_producers() -> None:
    tx = transactional_producer_config(BOOT, "fraud", "pod-1")
    assert tx["transactional.id"] == "fraud-pod-1" == transactional_id("fraud", "pod-1")
    assert tx["enable.idempotence"] is True and tx["acks"] == "all"
    plain = producer_config(BOOT)
    assert "transactional.id" not in plain
    assert plain["enable.idempotence"] is True
    with pytest.raises(ValueError):
        transactional_id("fraud", "")


def test_restore_consumer() -> None:
    conf = restore_consumer_config(BOOT)
    assert conf["enable.partition.eof"] is True
    assert conf["isolation.level"] == "read_committed"
    assert conf["enable.auto.commit"] is False


def test_passthrough_wins_and_guarantee_overrides_are_logged() -> None:
    user = {"security.protocol": "SASL_SSL", "sasl.password": "s3cret", "linger.ms": 50,
            "isolation.level": "read_uncommitted"}
    with capture_logs() as logs:
        conf = consumer_config(BOOT, "g", user)
        tx = transactional_producer_config(BOOT, "g", "i", user)
    assert conf["security.protocol"] == "SASL_SSL"
    assert conf["isolation.level"] == "read_uncommitted"
    assert tx["linger.ms"] == 50
    warned = [e for e in logs if e["event"] == "kafka_setting_overridden"]
    assert [(e["client"], e["setting"]) for e in warned] == [("consumer", "isolation.level")]
    assert "s3cret" not in str(warned)


def test_every_config_builds_a_client() -> None:
    """librdkafka accepts every setting we write (no broker needed to construct clients)."""
    Consumer(consumer_config(BOOT, "g")).close()
    Consumer(restore_consumer_config(BOOT)).close()
    Producer(producer_config(BOOT)).flush(0)
    Producer(transactional_producer_config(BOOT, "g", "i")).flush(0)
    AdminClient(admin_config(BOOT))


def test_empty_bootstrap() -> None:
    with pytest.raises(ValueError, match="bootstrap_servers"):
        producer_config("")


def test_redact() -> None:
    shown = redact(consumer_config(BOOT, "g", {"sasl.password": "x", "ssl.key.password": "y"}))
    assert shown["sasl.password"] == "***" and shown["ssl.key.password"] == "***"
    assert shown["error_cb"] == "<log_kafka_error>"


def test_describe_error() -> None:
    fenced = KafkaException(KafkaError(KafkaError._FENCED, "fenced by a newer instance",
                                       fatal=True))
    text = describe_error(fenced, "committing")
    assert text.startswith("committing: fenced by a newer instance [_FENCED]")
    assert "kafka.instance_id" in text and "(fatal)" in text
    assert describe_error(ValueError("plain")) == "plain"
    with capture_logs() as logs:
        log_kafka_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert logs[0]["event"] == "kafka_connection_error"
    assert "bootstrap.servers" in logs[0]["error"]


def test_a_fenced_error_flagged_abortable_still_ends_the_run_as_fenced() -> None:
    """Seen in CI on the embedded broker: the fencing reached ``send_offsets_to_transaction``
    as an abortable error; the abort of a fenced producer then timed out, and the run ended
    as ``kafka_error`` (exit 4) instead of ``fenced`` (exit 6)."""
    fenced = KafkaError(KafkaError._FENCED, "fenced", fatal=False, txn_requires_abort=True)
    assert is_terminal(fenced) and is_fatal(KafkaException(fenced))
    assert failure_of(KafkaException(fenced))[1:3] == ("fenced", Exit.FENCED)
    abortable = KafkaError(KafkaError._TIMED_OUT, "slow", txn_requires_abort=True)
    assert not is_terminal(abortable) and not is_fatal(KafkaException(abortable))


def test_a_bare_fatal_error_is_explained_by_the_fatal_error_the_client_reported() -> None:
    """After a fatal error librdkafka answers calls with _FATAL or _STATE; the service's last
    line must name the cause the client reported through error_cb instead (seen: fenced)."""
    first = FirstFatal()
    bare = KafkaException(KafkaError(KafkaError._FATAL))
    assert first.explain(bare) is bare  # nothing reported: nothing better to say
    with capture_logs() as logs:
        first(KafkaError(KafkaError._TRANSPORT, "down"))  # not fatal: not kept
        first(KafkaError(KafkaError.PRODUCER_FENCED, "fenced", fatal=True))
        first(KafkaError(KafkaError._FATAL, "later", fatal=True))  # the first one is the cause
    assert [e["event"] for e in logs] == [
        "kafka_connection_error", "kafka_fatal_error", "kafka_fatal_error"
    ]
    assert failure_of(first.explain(bare))[1:3] == ("fenced", Exit.FENCED)
    broken = KafkaException(KafkaError(KafkaError._STATE))  # a transaction the fencing broke
    assert failure_of(first.explain(broken))[1:3] == ("fenced", Exit.FENCED)
    bug = ZeroDivisionError("x")
    assert first.explain(bug) is bug  # not a Kafka error: not the client's to explain
