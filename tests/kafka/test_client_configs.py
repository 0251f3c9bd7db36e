"""Config builders: oml's settings, the user's passthrough on top, errors in plain words."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from structlog.testing import capture_logs

from oml.kafka.clients import (
    admin_config,
    consumer_config,
    describe_error,
    log_kafka_error,
    producer_config,
    redact,
    restore_consumer_config,
    transactional_id,
    transactional_producer_config,
)

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
