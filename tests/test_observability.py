from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import numpy as np
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from oml.http import HealthServer
from oml.observability import LATENCY_BUCKETS, BatchHistogram, ServiceMetrics


def get(server: HealthServer, path: str, accept: str | None = None) -> tuple[int, str, str]:
    """A real HTTP request (http.client: no proxy settings get in the way)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("GET", path, headers={"Accept": accept} if accept else {})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode()
    finally:
        conn.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


class Clock:
    """A monotonic clock that moves only when the test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def clocked(clock: Clock) -> ServiceMetrics:
    """Metrics whose heartbeat ages by ``clock``, not by real time."""
    return ServiceMetrics(clock=clock, process_metrics=False)


@pytest.fixture
def server(metrics: ServiceMetrics) -> Iterator[HealthServer]:
    with HealthServer(0, metrics, host="127.0.0.1", heartbeat_timeout=5.0) as srv:
        yield srv


def test_metrics_update_and_are_served(metrics: ServiceMetrics, server: HealthServer) -> None:
    metrics.batch_latency.observe(0.003)
    metrics.count_events("unlabeled", 40)
    metrics.count_events("feedback", 10)
    metrics.predicted.inc(40)
    metrics.learned.inc(10)
    metrics.event_latency.observe_many([0.0002] * 39 + [20.0])
    metrics.dead_letter("decode_error", 2)
    metrics.models.set(17)
    metrics.cache_size.set(30)
    metrics.cache_hits.inc(9)
    metrics.cache_misses.inc(1)
    metrics.cache_expired.inc(3)
    metrics.accuracy.labels(algorithm="pa").set(0.875)
    metrics.restore_started(2)
    metrics.add_restored(2, 120)

    status, ctype, body = get(server, "/metrics")
    assert status == 200
    assert ctype.startswith("text/plain")
    s = samples(body)
    assert s[("oml_events_total", (("kind", "unlabeled"),))] == 40
    assert s[("oml_events_total", (("kind", "feedback"),))] == 10
    assert s[("oml_events_total", (("kind", "dead_letter"),))] == 2
    assert s[("oml_dead_letters_total", (("reason", "decode_error"),))] == 2
    assert s[("oml_predict_total", ())] == 40
    assert s[("oml_learn_total", ())] == 10
    assert s[("oml_models", ())] == 17
    assert s[("oml_feature_cache_entries", ())] == 30
    assert s[("oml_feature_cache_hits_total", ())] == 9
    assert s[("oml_feature_cache_misses_total", ())] == 1
    assert s[("oml_feature_cache_expired_total", ())] == 3
    assert s[("oml_prequential_accuracy", (("algorithm", "pa"),))] == 0.875
    assert s[("oml_restored_records", (("partition", "2"),))] == 120
    assert s[("oml_partitions_restoring", ())] == 1
    assert s[("oml_ready", ())] == 0
    assert s[("oml_batch_latency_seconds_count", ())] == 1
    assert s[("oml_batch_latency_seconds_sum", ())] == pytest.approx(0.003)
    assert s[("oml_event_latency_seconds_count", ())] == 40
    assert s[("oml_event_latency_seconds_bucket", (("le", "0.00025"),))] == 39
    assert s[("oml_event_latency_seconds_bucket", (("le", "10.0"),))] == 39
    assert s[("oml_event_latency_seconds_bucket", (("le", "+Inf"),))] == 40
    assert any(name == "oml_build_info" and dict(labels).get("version") for name, labels in s)
    assert any(name.startswith("process_") for name, _ in s)


def test_metrics_openmetrics_when_asked(server: HealthServer) -> None:
    status, ctype, body = get(server, "/metrics", accept="application/openmetrics-text")
    assert status == 200
    assert ctype.startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")


def test_healthz_goes_stale_without_heartbeat(clocked: ServiceMetrics, clock: Clock) -> None:
    with HealthServer(0, clocked, host="127.0.0.1", heartbeat_timeout=10) as srv:
        clocked.heartbeat()
        clock.now += 10
        status, ctype, body = get(srv, "/healthz")
        assert status == 200
        assert ctype == "application/json"
        assert json.loads(body)["status"] == "ok"

        clock.now += 0.5
        status, _, body = get(srv, "/healthz")
        assert status == 503
        assert json.loads(body)["status"] == "stale"

        clocked.heartbeat()
        assert get(srv, "/healthz")[0] == 200


def test_readyz_follows_ready_and_restore(metrics: ServiceMetrics, server: HealthServer) -> None:
    metrics.heartbeat()
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["status"] == "not_ready"

    metrics.restore_started(0)
    metrics.restore_started(1)
    metrics.add_restored(0, 10)
    metrics.restore_finished(0)
    metrics.set_ready(True)  # too early: partition 1 is still restoring
    status, _, body = get(server, "/readyz")
    assert status == 503
    assert json.loads(body)["partitions_restoring"] == [1]

    metrics.restore_finished(1)
    assert get(server, "/readyz")[0] == 200
    assert samples(get(server, "/metrics")[2])[("oml_ready", ())] == 1

    # A rebalance: the service says not ready, restores, says ready again.
    metrics.set_ready(False)
    metrics.partition_revoked(1)
    metrics.restore_started(3)
    assert get(server, "/readyz")[0] == 503
    metrics.restore_finished(3)
    metrics.set_ready(True)
    assert get(server, "/readyz")[0] == 200
    s = samples(get(server, "/metrics")[2])
    assert ("oml_restored_records", (("partition", "1"),)) not in s
    assert s[("oml_restored_records", (("partition", "0"),))] == 10


def test_readyz_fails_when_loop_is_stuck(clocked: ServiceMetrics, clock: Clock) -> None:
    clocked.set_ready(True)
    with HealthServer(0, clocked, host="127.0.0.1", heartbeat_timeout=10) as srv:
        clocked.heartbeat()
        assert get(srv, "/readyz")[0] == 200
        clock.now += 10.5
        status, _, body = get(srv, "/readyz")
        assert status == 503
        assert json.loads(body)["alive"] is False


def test_unknown_path_and_head(server: HealthServer) -> None:
    assert get(server, "/nope")[0] == 404
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("HEAD", "/metrics")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == b""
    conn.close()


def test_two_services_in_one_process_do_not_collide() -> None:
    a, b = ServiceMetrics(), ServiceMetrics()
    a.count_events("feedback", 5)
    b.count_events("feedback", 1)
    with (
        HealthServer(0, a, host="127.0.0.1") as sa,
        HealthServer(0, b, host="127.0.0.1") as sb,
    ):
        assert sa.port != sb.port
        ka = samples(get(sa, "/metrics")[2])
        kb = samples(get(sb, "/metrics")[2])
    assert ka[("oml_events_total", (("kind", "feedback"),))] == 5
    assert kb[("oml_events_total", (("kind", "feedback"),))] == 1


def test_server_lifecycle(metrics: ServiceMetrics) -> None:
    srv = HealthServer(0, metrics, host="127.0.0.1")
    with pytest.raises(RuntimeError):
        _ = srv.port
    srv.start()
    port = srv.port
    assert port > 0
    assert srv.url == f"http://127.0.0.1:{port}"
    assert srv.start() is srv  # starting twice is harmless
    srv.stop()
    srv.stop()
    with pytest.raises(OSError):
        get_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        get_conn.request("GET", "/healthz")
        get_conn.getresponse()


def test_batch_histogram_matches_one_by_one() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [rng.exponential(0.01, 500), list(LATENCY_BUCKETS), [-0.5, np.nan, 50.0]]
    )
    one, as_list, as_array = (BatchHistogram(f"h{i}", "h") for i in range(3))
    for v in values:
        one.observe(float(v))
    as_list.observe_many(values.tolist())
    as_array.observe_many(values)

    def buckets(h: BatchHistogram) -> list[tuple[str, float]]:
        (family,) = h.collect()
        return [
            (s.labels.get("le", s.name[len(h.name) :]), s.value)
            for s in family.samples
            if not s.name.endswith("_sum")  # summed in a different order: approx below
        ]

    assert buckets(one) == buckets(as_list) == buckets(as_array)
    assert one.sum == pytest.approx(as_list.sum) == pytest.approx(as_array.sum)
    assert one.count == len(values) - 1  # NaN dropped
    assert one.sum == pytest.approx(float(np.nansum(np.maximum(values, 0.0))))
    # A value equal to a bound is counted in that bound's bucket (le is inclusive).
    h = BatchHistogram("h", "h", buckets=[0.1, 1.0])
    h.observe_many([0.1, 1.0, 1.5])
    (family,) = h.collect()
    got = {s.labels["le"]: s.value for s in family.samples if "le" in s.labels}
    assert got == {"0.1": 1, "1.0": 2, "+Inf": 3}


def test_operator_series_exist_from_the_start_and_follow_rebalances(
    metrics: ServiceMetrics,
) -> None:
    s = samples(generate_latest(metrics.registry).decode())
    # every reason and rebalance kind has a series at 0 before the first one happens
    for reason in ("malformed", "unknown_event", "key_mismatch", "internal_error"):
        assert s[("oml_dead_letters_total", (("reason", reason),))] == 0
    for kind in ("assigned", "revoked", "lost"):
        assert s[("oml_rebalances_total", (("kind", kind),))] == 0
    assert metrics.phase == "starting"
    metrics.set_phase("joining")
    assert metrics.phase == "joining"

    metrics.assigned([0, 1, 2], owned=3)
    metrics.restore_started(0)
    assert metrics.phase == "restoring"
    metrics.restore_finished(0)
    metrics.set_ready(True)
    metrics.set_lag({0: 5, 1: 0, 2: 7})
    s = samples(generate_latest(metrics.registry).decode())
    assert metrics.phase == "ready"
    assert s[("oml_partitions_assigned", ())] == 3
    assert s[("oml_consumer_lag", (("partition", "2"),))] == 7

    metrics.revoked([2], owned=2)
    metrics.revoked([1], owned=1, lost=True)
    s = samples(generate_latest(metrics.registry).decode())
    assert s[("oml_rebalances_total", (("kind", "revoked"),))] == 1
    assert s[("oml_rebalances_total", (("kind", "lost"),))] == 1
    assert s[("oml_partitions_assigned", ())] == 1
    assert ("oml_consumer_lag", (("partition", "2"),)) not in s  # gone with its partition


def test_heartbeat_with_injected_clock() -> None:
    now = [100.0]
    m = ServiceMetrics(clock=lambda: now[0], process_metrics=False)
    srv = HealthServer(0, m, heartbeat_timeout=10)
    assert srv.liveness()[0] == 200  # grace period from construction
    now[0] += 11
    assert srv.liveness()[0] == 503
    m.heartbeat()
    assert srv.liveness()[0] == 200
    assert m.seconds_since_heartbeat() == 0


def test_restore_progress_counts_as_heartbeat() -> None:
    now = [0.0]
    m = ServiceMetrics(clock=lambda: now[0], process_metrics=False)
    srv = HealthServer(0, m, heartbeat_timeout=10)
    m.restore_started(5)
    now[0] += 9
    m.add_restored(5, 1000)
    now[0] += 9
    assert srv.liveness()[0] == 200
    assert not m.is_ready and m.restoring == {5}


def test_every_metric_passes_promtool(metrics: ServiceMetrics) -> None:
    """Prometheus' own linter on everything /metrics can show (.ci/run installs promtool; a
    developer without it skips, CI never does)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (.ci/run installs it)")
        pytest.skip("promtool is not installed")
    metrics.dead_letter("malformed")
    metrics.assigned([0, 1], owned=2)
    metrics.set_lag({0: 3, 1: 0})
    metrics.accuracy.labels(algorithm="pa").set(0.5)
    metrics.restore_started(0)
    metrics.add_restored(0, 5)
    metrics.event_latency.observe_many([0.1, 2.0])
    metrics.batch_latency.observe(0.01)
    metrics.commits.inc()
    metrics.duplicates.inc()
    text = generate_latest(metrics.registry)
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True,
                            timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


# ---------------------------------------------------------------------- the server's bounds


def test_many_connections_are_bounded_and_probes_still_answer(metrics: ServiceMetrics) -> None:
    """20 idle clients against 4 slots: 4 are held until their deadline, the rest wait or are
    refused; no thread per connection piles up, and once they are dropped a probe answers."""
    import socket
    import threading

    metrics.heartbeat()
    with HealthServer(0, metrics, host="127.0.0.1", max_connections=4,
                      request_timeout=1.0) as srv:  # fmt: skip
        before = threading.active_count()
        idle = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(20)]
        time.sleep(0.5)
        assert threading.active_count() - before <= 4
        started = time.monotonic()
        answers = []
        for sock in idle:
            sock.settimeout(5)
            try:
                answers.append(sock.recv(100))
            except OSError:
                answers.append(b"")
            sock.close()
        assert time.monotonic() - started < 15
        assert srv.refused >= 1
        assert any(a.startswith(b"HTTP/1.0 503") for a in answers)
        status, _, body = get(srv, "/healthz")
        assert status == 200 and json.loads(body)["status"] == "ok"


def test_a_slow_client_is_dropped_at_its_deadline(metrics: ServiceMetrics) -> None:
    """One byte a second never completes a request: the server closes it after
    request_timeout, however steadily the bytes come."""
    import socket

    with HealthServer(0, metrics, host="127.0.0.1", request_timeout=1.5) as srv:
        sock = socket.create_connection(("127.0.0.1", srv.port))
        sock.settimeout(0.1)
        started = time.monotonic()
        closed_after = None
        for byte in b"GET /metrics HTTP/1.0\r\n":
            try:
                sock.sendall(bytes([byte]))
                if sock.recv(100) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                pass
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.4)  # the byte-a-second client, sped up
        sock.close()
        assert closed_after is not None, "the slow client was never dropped"
        assert 1.4 <= closed_after < 3.5
        assert get(srv, "/healthz")[0] in (200, 503)  # still serving


def test_the_server_is_built_from_the_metrics_config(metrics: ServiceMetrics) -> None:
    from oml.config import load_config

    config = load_config(None, {}, {"metrics.port": 0, "metrics.host": "127.0.0.1",
                                    "metrics.max_connections": 3,
                                    "metrics.request_timeout_s": 2.5})  # fmt: skip
    srv = HealthServer.from_config(config.metrics, metrics)
    assert (srv.host, srv.max_connections, srv.request_timeout) == ("127.0.0.1", 3, 2.5)
    assert load_config(None, {}, {}).metrics.host == "0.0.0.0"
    with pytest.raises(ValueError, match="max_connections"):
        HealthServer(0, metrics, max_connections=0)


def test_the_container_health_check_reads_the_configured_port(
    clocked: ServiceMetrics, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from oml import healthcheck

    clocked.heartbeat()
    with HealthServer(0, clocked, host="127.0.0.1", heartbeat_timeout=10) as srv:
        monkeypatch.setenv("OML_METRICS__PORT", "1")  # the flag on the command line wins
        monkeypatch.setattr(healthcheck, "_service_argv",
                            lambda: ["oml", "run", "--metrics-port", str(srv.port)])
        assert healthcheck.main() == 0
        clock.now += 11  # no heartbeat: /healthz answers 503
        assert healthcheck.main() == 1
        monkeypatch.setattr(healthcheck, "_service_argv", lambda: ["oml", "run"])
        assert healthcheck.main() == 1  # port 1: nothing listens
