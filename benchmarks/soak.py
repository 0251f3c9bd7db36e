"""A soak run of the service (not a test: run it by hand, it takes ``--minutes``).

    python benchmarks/soak.py --minutes 10 --rate 2000

Starts ``oml run`` as its own process (exactly-once, JSON, ``pa``, 4 partitions) on the
embedded broker or on ``OML_BOOTSTRAP_SERVERS``, and feeds it at a fixed rate with ever-new
keys (``--events-per-key`` each): every event is scored, and ``--labeled`` of them get their
feedback ``--delay`` events later; the rest are never labeled and wait in the feature cache
until its cap (``--cache-cap``) pushes them out.

Every minute it records the service's RSS (from /proc), the feature-cache size (from
``/metrics``) and the p50/p99 latency from an event's timestamp to its prediction being read by
a ``read_committed`` consumer: what a downstream consumer sees.  It writes one JSON document to
``benchmarks/soak/soak-<date>.json`` (``--out`` to change) with the per-minute rows, the RSS
slope (MB per minute, least squares over minutes 2..end) and the last minute's p99 against the
first's.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from oml.kafka.broker import EmbeddedBroker

HERE = Path(__file__).parent


@contextlib.contextmanager
def _cluster() -> Iterator[tuple[str, int | None]]:
    """The bootstrap servers, and the broker's pid when it is the embedded one."""
    external = os.environ.get("OML_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external, None
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers, broker.pid


def _cpu_s(pid: int | None) -> float:
    """User plus system CPU seconds used so far by ``pid`` (nan if unknown)."""
    if pid is None:
        return float("nan")
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        for line in reply.read().decode().splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


def _batch_totals(port: int) -> tuple[float, float, float]:
    """Seconds spent processing polled batches so far, how many batches, and commits."""
    return (_metric(port, "oml_batch_latency_seconds_sum"),
            _metric(port, "oml_batch_latency_seconds_count"), _metric(port, "oml_commits_total"))


def _wait_ready(port: int, service: subprocess.Popen, timeout: float = 120.0) -> None:
    """Until ``/readyz`` answers 200: partitions assigned and restored."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.poll() is not None:
            raise RuntimeError(f"the service exited with {service.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("the service did not become ready")


def _passthrough(bootstrap: str, topic: str, port: int) -> None:
    """The baseline: a bare transactional consume -> produce loop (a prediction-shaped record
    per event, a commit a second), with /readyz once assigned, so the same harness measures it."""
    import http.server

    ready = threading.Event()

    class Ready(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if ready.is_set() else 503)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Ready)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "fetch.queue.backoff.ms": 10,
                         "session.timeout.ms": 6000})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{topic}",
                         "linger.ms": 10, "compression.type": "lz4"})
    producer.init_transactions()
    consumer.subscribe([topic], on_assign=lambda c, ps: ready.set())
    out, last = f"{topic}.predictions", time.monotonic()
    producer.begin_transaction()
    while True:
        for m in consumer.consume(10_000, 0.1):
            if m.error() is None:
                body = json.loads(m.value())
                if "features" in body:
                    producer.produce(out, json.dumps({
                        "event_id": body["event_id"], "key": body["key"], "prediction": True,
                        "event_timestamp": body["timestamp"]}).encode(), m.key())
        if time.monotonic() - last >= 1.0:
            producer.send_offsets_to_transaction(
                consumer.position(consumer.assignment()), consumer.consumer_group_metadata())
            producer.commit_transaction()
            producer.begin_transaction()
            last = time.monotonic()


def _feed(bootstrap: str, topic: str, args: argparse.Namespace, stop: threading.Event) -> None:
    """Events at ``args.rate`` per second, timestamped when sent."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5,
                         "partitioner": "murmur2_random"})
    rng = np.random.default_rng(0)
    pending: list[tuple[int, str, bool]] = []
    started, sent, i = time.monotonic(), 0, 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * args.rate)
        while sent < due:
            now = int(time.time() * 1000)
            if pending and len(pending) >= args.delay:
                eid, key, label = pending.pop(0)
                body = {"event_id": f"e{eid}", "key": key, "label": label, "timestamp": now}
            else:
                key = f"k{i // args.events_per_key}"
                x = rng.normal(size=4)
                body = {"event_id": f"e{i}", "key": key, "features": x.tolist(), "timestamp": now}
                if rng.random() < args.labeled:
                    pending.append((i, key, bool(x.sum() > 0)))
                i += 1
            producer.produce(topic, value=json.dumps(body).encode(), key=body["key"].encode())
            sent += 1
        producer.poll(0)
        time.sleep(0.005)
    producer.flush(30)


def _probe(bootstrap: str, topic: str, found: dict[str, list[float]],
           stop: threading.Event) -> None:
    """The broker alone, nothing of oml on the path: every 100 ms one plain record and one
    record in a transaction of its own to a topic of their own.  Records ``plain``, the time
    until a plain consumer reads the plain record back, and ``commit``, how long
    ``commit_transaction`` takes.  If these grow as the run goes on, the broker slows down."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    transactional = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0,
                              "transactional.id": f"probe-{uuid.uuid4().hex}"})
    transactional.init_transactions(30)
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 10, "fetch.queue.backoff.ms": 10})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    next_send = time.monotonic()
    while not stop.is_set():
        if time.monotonic() >= next_send:
            producer.produce(topic, value=repr(time.time()).encode(), partition=0)
            producer.poll(0)
            transactional.begin_transaction()
            transactional.produce(topic, value=b"t", partition=1)
            started = time.monotonic()
            transactional.commit_transaction(30)
            found["commit"].append(time.monotonic() - started)
            next_send += 0.1
        for m in consumer.consume(100, 0.02):
            if m.error() is None:
                found["plain"].append(time.time() - float(m.value()))
    producer.flush(10)
    consumer.close()


def _watch(bootstrap: str, topic: str, latencies: list[float], stop: threading.Event) -> None:
    """Event time to committed visibility of each prediction, in seconds."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"soak-{uuid.uuid4().hex}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                         "fetch.queue.backoff.ms": 10})
    # assigned, not subscribed: a group join would add its own wait to the first latencies
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    while not stop.is_set():
        for m in consumer.consume(1000, 0.2):
            if m.error() is None:
                ts = json.loads(m.value())["event_timestamp"]
                latencies.append(time.time() - ts / 1000)
    consumer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=2000.0, help="events per second offered")
    p.add_argument("--events-per-key", type=int, default=5)
    p.add_argument("--labeled", type=float, default=0.8, help="share of events labeled")
    p.add_argument("--delay", type=int, default=50, help="feedback this many events later")
    p.add_argument("--cache-cap", type=int, default=20_000)
    p.add_argument("--port", type=int, default=9464)
    p.add_argument("--out", type=Path,
                   default=None, help="default: benchmarks/soak/soak[-passthrough]-DATE.json")
    p.add_argument("--passthrough", action="store_true",
                   help="measure a bare consume->produce loop instead of oml (the baseline)")
    p.add_argument("--serve-passthrough", nargs=2, metavar=("BOOTSTRAP", "TOPIC"),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve_passthrough:
        _passthrough(*args.serve_passthrough, args.port)
        return

    with _cluster() as (bootstrap, broker_pid):
        topic = f"soak-{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, 4, -1)])[topic].result(30)
        admin.create_topics([NewTopic(f"{topic}.probe", 2, -1)])[f"{topic}.probe"].result(30)
        if args.passthrough:
            admin.create_topics([NewTopic(f"{topic}.predictions", 4, -1)])[
                f"{topic}.predictions"].result(30)
            command = [sys.executable, __file__, "--serve-passthrough", bootstrap, topic,
                       "--port", str(args.port)]
        else:
            command = [
                sys.executable, "-m", "oml.cli", "run", "--bootstrap-servers", bootstrap,
                "--input", topic, "--group-id", f"g-{topic}", "--algorithm", "pa",
                "--set", "kafka.instance_id=soak", "--set", f"metrics.port={args.port}",
                "--set", f"cache.max_entries={args.cache_cap}", "--log-format", "json",
            ]
        service = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop = threading.Event()
        latencies: list[float] = []
        probed: dict[str, list[float]] = {"plain": [], "commit": []}
        threads = [threading.Thread(target=_feed, args=(bootstrap, topic, args, stop)),
                   threading.Thread(target=_watch, args=(bootstrap, f"{topic}.predictions",
                                                        latencies, stop)),
                   threading.Thread(target=_probe, args=(bootstrap, f"{topic}.probe", probed,
                                                        stop))]
        rows = []
        try:
            _wait_ready(args.port, service)
            for t in threads:
                t.start()
            seen = (0.0, 0.0, 0.0) if args.passthrough else _batch_totals(args.port)
            cpu = {"service": _cpu_s(service.pid), "broker": _cpu_s(broker_pid),
                   "harness": _cpu_s(os.getpid())}
            for minute in range(1, int(args.minutes) + 1):
                time.sleep(60)
                used = {"service": _cpu_s(service.pid), "broker": _cpu_s(broker_pid),
                        "harness": _cpu_s(os.getpid())}
                busy = {k: round((used[k] - cpu[k]) / 60, 3) for k in used}  # cores in use
                cpu = used
                window, latencies[:] = list(latencies), []
                lat = np.array(window) if window else np.array([np.nan])
                probe = {k: np.array(v or [np.nan]) for k, v in probed.items()}
                for v in probed.values():
                    v.clear()
                batches = _batch_totals(args.port) if not args.passthrough else (0.0, 0.0, 0.0)
                row = {
                    "minute": minute,
                    "predictions": len(window),
                    "p50_ms": round(float(np.percentile(lat, 50)) * 1000, 1),
                    "p99_ms": round(float(np.percentile(lat, 99)) * 1000, 1),
                    "rss_mb": round(_rss_mb(service.pid), 1),
                    "cache_entries": None if args.passthrough else _metric(
                        args.port, "oml_feature_cache_entries"),
                    "models": None if args.passthrough else _metric(args.port, "oml_models"),
                    "probe_p50_ms": round(float(np.percentile(probe["plain"], 50)) * 1000, 1),
                    "probe_p99_ms": round(float(np.percentile(probe["plain"], 99)) * 1000, 1),
                    "probe_commit_p50_ms": round(
                        float(np.percentile(probe["commit"], 50)) * 1000, 1),
                    "probe_commit_p99_ms": round(
                        float(np.percentile(probe["commit"], 99)) * 1000, 1),
                    "batch_mean_ms": None if args.passthrough else round(
                        (batches[0] - seen[0]) / max(batches[1] - seen[1], 1) * 1000, 2),
                    "commits": None if args.passthrough else int(batches[2] - seen[2]),
                    "cores_service": busy["service"],
                    "cores_broker": busy["broker"],
                    "cores_harness": busy["harness"],
                }
                rows.append(row)
                seen = batches
                print(json.dumps(row), flush=True)
        finally:
            stop.set()
            for t in threads:
                if t.is_alive():
                    t.join(60)
            service.terminate()
            service.wait(60)

    minutes = np.array([r["minute"] for r in rows[1:]], dtype=float)
    rss = np.array([r["rss_mb"] for r in rows[1:]])
    slope = float(np.polyfit(minutes, rss, 1)[0]) if len(rows) > 2 else float("nan")
    result = {
        "command": " ".join(sys.argv),
        "settings": {k: str(v) for k, v in vars(args).items()},
        "rows": rows,
        "rss_slope_mb_per_min": round(slope, 3),
        "p99_last_over_first": round(rows[-1]["p99_ms"] / rows[0]["p99_ms"], 2) if rows else None,
        "cache_cap": args.cache_cap,
    }
    if args.out is None:
        kind = "soak-passthrough" if args.passthrough else "soak"
        args.out = HERE / "soak" / f"{kind}-{dt.date.today().isoformat()}.json"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("rss_slope_mb_per_min", "p99_last_over_first")}))


if __name__ == "__main__":
    main()
