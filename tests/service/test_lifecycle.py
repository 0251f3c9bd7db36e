"""How a service instance ends, on a real broker: identity (default ids, pinned ids as static
members, fencing), bounded shutdown whatever the broker does, a broker that lost the service's
topics or offsets, and the one line each end leaves.

The tests that stop, freeze or replace the broker start one of their own (an embedded broker),
so they are skipped against ``OML_BOOTSTRAP_SERVERS``; the others run on either.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import msgspec
import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from service_helpers import predictions_by_event
from structlog.testing import capture_logs

from oml.config import load_config
from oml.exits import Exit
from oml.kafka.broker import EmbeddedBroker, free_port
from oml.kafka.restore import ChangelogReader
from oml.kafka.watch import BrokerWatch
from oml.lifecycle import BrokerLost
from oml.observability import ServiceMetrics
from oml.replay import dataset_events, produce_events
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROWS = [({"a": float(i % 7), "b": float(i % 3)}, i % 2 == 0) for i in range(400)]


def events(n_keys: int = 16, passes: int = 1) -> list[Any]:
    rows, labels = zip(*ROWS, strict=True)
    return list(dataset_events(list(rows), list(labels), n_keys=n_keys, delay=5, passes=passes))


class Feeder:
    """A producer thread: a pass of events every ``every_s`` until stopped."""

    def __init__(self, config: Any, bootstrap: str, every_s: float = 0.3) -> None:
        self.config, self.bootstrap, self.every_s = config, bootstrap, every_s
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self.stopped.is_set():
            batch = [msgspec.structs.replace(e, event_id=f"{i}-{e.event_id}") for e in events()]
            try:
                produce_events(self.config, self.bootstrap, iter(batch))
            except Exception:  # the broker is gone or frozen: the test says what it expects
                return
            i += 1
            self.stopped.wait(self.every_s)

    def __enter__(self) -> Feeder:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(1)  # (a frozen broker may hold its last flush)


def oml_run(config: Any, bootstrap: str, *args: str, metrics_port: int | None = None
            ) -> subprocess.Popen[str]:
    """``oml run`` in a subprocess on ``config``'s topics and group, logging JSON to a pipe."""
    cmd = [
        sys.executable, "-m", "oml.cli", "run", "--bootstrap-servers", bootstrap,
        "--input", config.topics.input, "--group-id", config.kafka.group_id,
        "--set", "processing.commit_interval_ms=200", "--log-format", "json",
        *[arg for k, v in config.kafka.librdkafka.items() for arg in ("--kafka", f"{k}={v}")],
        *(["--metrics-port", str(metrics_port)] if metrics_port else []), *args,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def lines(stderr: str) -> list[dict[str, Any]]:
    out = []
    for line in stderr.splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            out.append({"event": line, "level": "raw"})
    return out


def errors(stderr: str) -> list[dict[str, Any]]:
    """Every line at error level or above, and every line that is not oml's JSON."""
    return [r for r in lines(stderr) if r.get("level") in ("error", "critical", "raw")]


def wait_for_predictions(read_all: Any, config: Any, n: int, proc: subprocess.Popen[str],
                         timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        assert time.monotonic() < deadline, "the service made no progress"
        try:
            if sum(predictions_by_event(read_all, config.topics.predictions).values()) >= n:
                return
        except AssertionError:  # its topics are not created yet
            pass
        time.sleep(0.3)


def finish(proc: subprocess.Popen[str], timeout: float) -> tuple[int, str, float]:
    """Wait for the process; (return code, stderr, seconds waited).  Killed if it overstays."""
    started = time.monotonic()
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, stderr = proc.communicate()
        pytest.fail(f"still running {timeout:g}s later; its log ends: {stderr[-2000:]}")
    return proc.returncode, stderr, time.monotonic() - started


# ------------------------------------------------------------------------------------ identity


def test_two_instances_on_one_host_with_default_ids_share_the_partitions(
    setup, bootstrap_servers, read_all
):
    """Before: both took the host name as instance id, and the second fenced the first."""
    config = setup(**{"kafka.instance_id": None, "processing.exit_when_idle_s": None})
    procs = [oml_run(config, bootstrap_servers) for _ in range(2)]
    try:
        with Feeder(config, bootstrap_servers):
            wait_for_predictions(read_all, config, 400, procs[0])
            time.sleep(8)  # the second one joins and takes partitions while events flow
            for p in procs:
                assert p.poll() is None, p.stderr.read()[-3000:] if p.stderr else ""
        for p in procs:
            p.send_signal(signal.SIGTERM)
        ends = [finish(p, 40) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    ids = set()
    for rc, stderr, _ in ends:
        assert rc == 0, stderr[-3000:]
        assert not errors(stderr), errors(stderr)
        started = [r for r in lines(stderr) if r.get("event") == "service_started"]
        ids.add(started[0]["instance_id"])
        stopped = [r for r in lines(stderr) if r.get("event") == "service_stopped"]
        assert len(stopped) == 1 and stopped[0]["events"] > 0  # each did some of the work
    assert len(ids) == 2


def test_a_fenced_instance_exits_6_with_one_line_naming_the_setting(
    setup, bootstrap_servers, read_all
):
    """Two instances pinned to one id: the older one is fenced.  Before: raw librdkafka FATAL
    lines, a normal-looking service_stopped, then it hung in the abort."""
    config = setup(**{"processing.exit_when_idle_s": None})
    first = oml_run(config, bootstrap_servers, "--set", "kafka.instance_id=same")
    second = None
    try:
        with Feeder(config, bootstrap_servers):
            wait_for_predictions(read_all, config, 200, first)
            second = oml_run(config, bootstrap_servers, "--set", "kafka.instance_id=same")
            rc, stderr, _ = finish(first, 60)
    finally:
        for p in (first, second):
            if p is not None and p.poll() is None:
                p.send_signal(signal.SIGTERM)
        if second is not None:
            finish(second, 40)
    assert rc == Exit.FENCED, stderr[-3000:]
    bad = errors(stderr)
    assert len(bad) == 1, bad
    (line,) = bad
    assert line["event"] == "service_failed" and line["cause"] == "fenced", line
    assert "kafka.instance_id" in line["error"] and "exception" not in line
    assert "service_stopped" not in stderr and "Traceback" not in stderr
    assert "FATAL" not in stderr and "__context__" not in stderr


def test_a_pinned_instance_restarted_after_kill_9_takes_its_partitions_back_at_once(
    setup, bootstrap_servers, read_all, kafka_config
):
    """A pinned id is a static member: the restarted instance does not wait for the dead one's
    session to expire (30 s here) before it has its partitions again."""
    session = {"session.timeout.ms": 30000, "heartbeat.interval.ms": 1000}
    config = setup(**{"processing.exit_when_idle_s": None, "kafka.librdkafka": {
        **{k: v for k, v in kafka_config.items() if k != "bootstrap.servers"}, **session}})
    port = free_port()
    first = oml_run(config, bootstrap_servers, "--set", "kafka.instance_id=pod-0")
    try:
        produce_events(config, bootstrap_servers, iter(events()))
        wait_for_predictions(read_all, config, 200, first)
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        launched = time.monotonic()
        second = oml_run(config, bootstrap_servers, "--set", "kafka.instance_id=pod-0",
                         metrics_port=port)
        try:
            ready = wait_ready(port, second, timeout=28)
            assert ready - launched < 28, "the restart waited out the dead member's session"
        finally:
            second.send_signal(signal.SIGTERM)
            rc, stderr, _ = finish(second, 40)
        assert rc == 0, stderr[-3000:]
    finally:
        if first.poll() is None:
            first.kill()


def wait_ready(port: int, proc: subprocess.Popen[str], timeout: float) -> float:
    """When ``/readyz`` first answered 200 (monotonic); fails after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic()
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    pytest.fail(f"not ready within {timeout:g}s")


# ---------------------------------------------------------------------- a broker of our own


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker this test may stop, freeze or replace (not the session's)."""
    if os.environ.get("OML_BOOTSTRAP_SERVERS", "").strip():
        pytest.skip("stops, freezes or replaces its broker: needs an embedded one of its own")
    broker = EmbeddedBroker(cluster_id="oml-lifecycle-test").start()
    try:
        yield broker
    finally:
        if broker.pid is not None:
            os.killpg(broker.pid, signal.SIGCONT)  # in case the test froze it
        broker.stop()


def own_config(broker: EmbeddedBroker, **overrides: Any) -> Any:
    bs = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bs})
    admin.create_topics([NewTopic("in", 4)])["in"].result(30)
    values = {
        "kafka.bootstrap_servers": bs, "kafka.group_id": "g", "kafka.instance_id": "one",
        "kafka.librdkafka": {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500},
        "topics.input": "in", "model.algorithm": "scw",
        "processing.commit_interval_ms": 200, "metrics.interval_s": 0.5,
    }
    values.update(overrides)
    return load_config(None, {}, values)


def own_read_all(broker: EmbeddedBroker) -> Any:
    """``read_all`` on this broker: each partition to its end, read_committed."""

    def read(topic: str) -> list[Any]:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        metadata = admin.list_topics(topic, timeout=10).topics[topic]
        if metadata.error is not None:
            raise AssertionError(f"cannot read {topic}: {metadata.error}")
        with ChangelogReader(broker.bootstrap_servers) as reader:
            return [SimpleNamespace(key=k, value=v, offset=o)
                    for p in sorted(metadata.partitions) for k, v, o in reader.read(topic, p)]

    return read


def test_sigterm_with_the_broker_frozen_ends_the_process_within_30s(own_broker):
    """Before: every blocking call waited for ever on a broker that does not answer."""
    config = own_config(own_broker)
    bs = own_broker.bootstrap_servers
    proc = oml_run(config, bs)
    read_all = own_read_all(own_broker)
    try:
        with Feeder(config, bs):
            wait_for_predictions(read_all, config, 200, proc)
            os.killpg(own_broker.pid, signal.SIGSTOP)  # mid-run: no answer to anything
            time.sleep(1)
            proc.send_signal(signal.SIGTERM)
            rc, stderr, waited = finish(proc, 35)
    finally:
        os.killpg(own_broker.pid, signal.SIGCONT)
        if proc.poll() is None:
            proc.kill()
    print(f"SIGTERM to exit: {waited:.1f} s, exit code {rc}")
    assert waited <= 30 and rc != 0, (waited, rc, stderr[-3000:])
    bad = errors(stderr)
    assert len(bad) == 1 and bad[0]["event"] == "service_failed", bad
    assert "service_stopped" not in stderr


def test_a_broker_restarted_empty_stops_the_service_loudly(own_broker):
    """Before: the loop stalled in the abort, /readyz still ready, SIGTERM ignored, and nothing
    said that the state was lost."""
    config = own_config(own_broker)
    bs, port = own_broker.bootstrap_servers, own_broker.port
    proc = oml_run(config, bs)
    read_all = own_read_all(own_broker)
    try:
        with Feeder(config, bs):
            wait_for_predictions(read_all, config, 200, proc)
        own_broker.stop()
        own_broker.requested_port = port
        own_broker.start()  # the same address and cluster id, and nothing in it
        rc, stderr, _ = finish(proc, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == Exit.BROKER_LOST, stderr[-3000:]
    lost = [r for r in lines(stderr) if r.get("event") == "broker_lost"]
    failed = [r for r in lines(stderr) if r.get("event") == "service_failed"]
    assert len(lost) == 1 and len(failed) == 1 and failed[0]["cause"] == "broker_lost", stderr
    assert "service_stopped" not in stderr


# -------------------------------------------------------------------------- topics and health


def test_a_topic_deleted_under_the_service_stops_it_with_a_clear_error(
    setup, bootstrap_servers, read_all, kafka_admin
):
    """Before: a transaction whose topic was gone never committed: the service hung."""
    config = setup(**{"processing.exit_when_idle_s": None})
    proc = oml_run(config, bootstrap_servers)
    try:
        with Feeder(config, bootstrap_servers):
            wait_for_predictions(read_all, config, 200, proc)
            gone = config.topics.predictions
            kafka_admin.delete_topics([gone])[gone].result(30)
            rc, stderr, _ = finish(proc, 40)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == Exit.BROKER_LOST, stderr[-3000:]
    failed = [r for r in lines(stderr) if r.get("event") == "service_failed"]
    assert len(failed) == 1 and f"topic {gone!r} is gone" in failed[0]["error"], stderr[-3000:]


def test_a_lost_topic_turns_healthz_unhealthy(bootstrap_servers, kafka_config, kafka_admin,
                                              new_topic):
    from oml.http import HealthServer

    names = [new_topic(2), new_topic(2)]
    metrics = ServiceMetrics(process_metrics=False)
    stopped = threading.Event()
    admin = AdminClient({**kafka_config, "allow.auto.create.topics": False})
    watch = BrokerWatch(admin, "g-watch", names[0], names[1:], metrics=metrics,
                        stop=stopped.set, interval_s=0.2).start()
    health = HealthServer(0, metrics, host="127.0.0.1")
    try:
        assert watch.failure is None and health.liveness()[0] == 200
        kafka_admin.delete_topics([names[1]])[names[1]].result(30)
        assert stopped.wait(30), "the watch never saw the topic go"
    finally:
        watch.stop()
    status, body = health.liveness()
    assert status == 503 and body["status"] == "failed" and names[1] in body["error"]
    assert health.readiness()[0] == 503
    with pytest.raises(BrokerLost):
        watch.check()


# ----------------------------------------------------------------------------- crash reports


def test_a_crash_ends_with_service_failed_and_a_clean_stop_with_service_stopped(setup,
                                                                                 bootstrap_servers):
    from test_faults import REGISTRY, Crash, Fragile, stream

    Fragile.once.clear()
    config = setup(**{"model.algorithm": "fragile"})
    produce_events(config, bootstrap_servers, iter(stream([1.0, 2.0, 99.0, 3.0])))
    with capture_logs() as logs, pytest.raises(Crash):
        Service(config, registry=REGISTRY).run()
    ends = [e for e in logs if e["event"] in ("service_failed", "service_stopped")]
    assert [e["event"] for e in ends] == ["service_failed"]
    assert ends[0]["cause"] == "bug" and isinstance(ends[0]["exc_info"], Crash)
    assert ends[0]["exit_code"] == Exit.FAILED and ends[0]["log_level"] == "error"
    with capture_logs() as logs:
        Service(config, registry=REGISTRY).run()
    assert [e["event"] for e in logs if e["event"].startswith("service_")] == [
        "service_started", "service_stopped"]
