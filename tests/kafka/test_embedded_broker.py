"""EmbeddedBroker: starts, answers, stops, explains failures, and never outlives its owner.

These start brokers of their own (not the session's), so they run with OML_BOOTSTRAP_SERVERS
set too.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from structlog.testing import capture_logs

from oml.kafka.broker import BrokerError, EmbeddedBroker

pytestmark = pytest.mark.broker


def _alive(pid: int) -> bool:
    """True while ``pid`` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] not in "ZX"
    except FileNotFoundError:
        return False


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def test_start_roundtrip_stop() -> None:
    broker = EmbeddedBroker()
    with broker:
        assert broker.running
        pid = broker.pid
        assert pid is not None
        host, port = broker.bootstrap_servers.split(":")
        assert host == "127.0.0.1"
        conf = {"bootstrap.servers": broker.bootstrap_servers}
        admin = AdminClient(conf)
        assert admin.list_topics(timeout=5).brokers
        admin.create_topics([NewTopic("roundtrip", 1)])["roundtrip"].result(10)
        producer = Producer(conf)
        producer.produce("roundtrip", key=b"k", value=b"v")
        assert producer.flush(10) == 0
        consumer = Consumer({**conf, "group.id": "g", "enable.partition.eof": True})
        consumer.assign([TopicPartition("roundtrip", 0, 0)])
        got = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() and msg.error().code() == KafkaError._PARTITION_EOF:
                break
            got.append((msg.key(), msg.value()))
        consumer.close()
        assert got == [(b"k", b"v")]
    assert not broker.running
    assert _wait_gone(pid)
    assert not _accepts(host, int(port))
    broker.stop()  # idempotent


def test_two_brokers_get_different_ports() -> None:
    with EmbeddedBroker() as a, EmbeddedBroker() as b:
        assert a.bootstrap_servers != b.bootstrap_servers


def test_not_started_has_no_bootstrap() -> None:
    with pytest.raises(BrokerError, match="not started"):
        _ = EmbeddedBroker().bootstrap_servers


def _script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-tansu"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def test_dying_broker_error_carries_its_output(tmp_path: Path) -> None:
    fake = _script(tmp_path, "echo 'error: something is badly wrong' >&2\nexit 3\n")
    broker = EmbeddedBroker(binary=fake, port=1, startup_timeout=5)
    with pytest.raises(BrokerError) as info:
        broker.start()
    message = str(info.value)
    assert "exited with code 3" in message
    assert "something is badly wrong" in message
    assert not broker.running


def test_silent_broker_times_out_and_is_killed(tmp_path: Path) -> None:
    fake = _script(tmp_path, "echo starting\nexec sleep 60\n")
    broker = EmbeddedBroker(binary=fake, port=1, startup_timeout=0.5)
    started = time.monotonic()
    with pytest.raises(BrokerError, match="did not accept connections") as info:
        broker.start()
    assert time.monotonic() - started < 5
    assert "starting" in str(info.value)
    assert not broker.running


def test_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        broker = EmbeddedBroker(port=port, startup_timeout=5)
        with pytest.raises(BrokerError, match=r"(?i)address.*in use"):
            broker.start()
        assert not broker.running


def test_missing_binary(tmp_path: Path) -> None:
    with pytest.raises(BrokerError, match="not an executable"):
        EmbeddedBroker(binary=tmp_path / "nope").start()


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from oml.kafka.broker import EmbeddedBroker
    broker = EmbeddedBroker().start()
    print(broker.pid, flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    # "exit": leave without stopping it; the atexit safety net must
    """
)


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_broker_does_not_outlive_its_owner(how: str) -> None:
    if how == "kill" and not sys.platform.startswith("linux"):
        pytest.skip("the kernel-side safety net (PR_SET_PDEATHSIG) is Linux only")
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, how], capture_output=True, text=True, timeout=60
    )
    expected = -signal.SIGKILL if how == "kill" else 0
    assert proc.returncode == expected, proc.stderr
    pid = int([line for line in proc.stdout.splitlines() if line.strip().isdigit()][-1])
    assert _wait_gone(pid), f"broker {pid} outlived its owner ({how})"


def test_stop_escalates_to_kill(tmp_path: Path) -> None:
    """A broker that does not stop when asked is killed after stop_timeout."""
    broker = EmbeddedBroker(stop_timeout=0.3)
    broker.start()
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # a stopped process cannot act on SIGINT
    started = time.monotonic()
    broker.stop()
    assert time.monotonic() - started < 5
    assert _wait_gone(pid)


def test_a_broker_that_died_is_reported_on_stop() -> None:
    broker = EmbeddedBroker().start()
    pid = broker.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while broker.running and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not broker.running
    assert "listening on" in broker.output_tail()
    with capture_logs() as logs:
        broker.stop()
    died = [e for e in logs if e["event"] == "embedded_broker_died"]
    assert died and died[0]["returncode"] == -signal.SIGKILL


def test_cluster_is_the_configured_one_or_an_embedded_broker_logged_once() -> None:
    from oml.kafka.broker import cluster

    with capture_logs() as logs, cluster("kafka-1:9092") as bootstrap:
        assert bootstrap == "kafka-1:9092"
    assert not logs
    with capture_logs() as logs, cluster(None) as bootstrap:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        assert admin.list_topics(timeout=10).brokers
    started = [e for e in logs if e["event"] == "embedded_broker_started"]
    assert len(started) == 1 and started[0]["bootstrap_servers"] == bootstrap
