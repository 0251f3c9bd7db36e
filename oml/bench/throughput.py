"""``oml bench throughput``: the service's rate and latency against a bare pass-through.

Both are measured in one run, on one broker, over the same input topic:

* **pass-through**: a consumer-group member that consumes in batches and produces every
  message's bytes to an output topic (no decoding, no learning, no transactions): the most a
  Python consume-produce loop moves here (under the same garbage-collector threshold as the
  service);
* **service**: ``oml run``'s loop with the configured guarantee (exactly-once by default) on the
  same events: decode, predict-and-cache, retrieve-and-update, changelogs, commits.

Rates count events from the first one consumed until the last one is committed (group joins
are not counted).  Then the service runs once more while events are produced at a fixed rate
(each stamped with the time it is produced), and a downstream ``read_committed`` consumer reads
the predictions: the latency that matters is from the event's time until that consumer sees
its prediction (under exactly-once, when the transaction holding it commits).  The batch's
processing time minus the event time is reported beside it.

With ``--restore N`` the run also restores N keys' models from a changelog against a bare
read of it, and measures the memory each restored key holds (:mod:`oml.bench.restore`).
"""

from __future__ import annotations

import contextlib
import gc
import json
import platform
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from oml.codecs.events import Event, EventEncoder
from oml.config import Config, load_config

DEFAULT_OUT = Path("benchmarks/throughput")
TARGET_RATIO = 0.4
TEST_CLIENT = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@dataclass
class Result:
    events: int
    keys: int
    features: int
    partitions: int
    guarantee: str
    algorithm: str
    repeat: int
    passthrough_events_per_s: float
    service_events_per_s: float
    passthrough_runs: list[float]
    service_runs: list[float]
    ratio: float
    target_ratio: float
    commit_interval_ms: int
    latency_rate: float
    processing_latency_ms_p50: float
    processing_latency_ms_p99: float
    processing_latency_ms_max: float
    visible_latency_ms_p50: float
    visible_latency_ms_p99: float
    visible_latency_ms_max: float
    machine: str
    restore: dict[str, Any] | None = None  # with --restore N: oml.bench.restore.RestoreResult


def synthetic_events(n: int, n_keys: int, d: int, delay: int, seed: int = 0,
                     start_ms: int | None = None) -> Iterator[Event]:
    """``n`` input messages (n // 2 pairs): unlabeled events over ``n_keys`` keys with ``d``
    features, each labeled by a feedback event ``delay`` events later (labels from a noisy
    linear teacher)."""
    pairs = n // 2
    rng = np.random.default_rng(seed)
    teacher = rng.normal(size=d)
    names = [f"f{j}" for j in range(d)]
    X = rng.normal(size=(pairs, d))
    y = (X @ teacher + rng.normal(scale=0.3, size=pairs)) > 0
    keys = rng.integers(0, n_keys, size=pairs)
    start = int(time.time() * 1000) if start_ms is None else start_ms
    pending: list[Event] = []
    for i in range(pairs):
        key = f"key-{keys[i]}"
        yield Event(f"e{i}", key, dict(zip(names, X[i].tolist(), strict=True)), None, start + i)
        pending.append(Event(f"e{i}", key, None, bool(y[i]), start + i))
        if len(pending) > delay:
            yield pending.pop(0)
    yield from pending


def _produce(bootstrap: str, topic: str, events: Iterator[Event], rate: float | None = None,
             stamp: bool = False) -> int:
    encoder = EventEncoder()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "batch.num.messages": 10_000, "queue.buffering.max.messages": 1_000_000})
    started = time.monotonic()
    sent = 0
    for event in events:
        if stamp:
            event.timestamp = int(time.time() * 1000)
        while True:
            try:
                producer.produce(topic, value=encoder(event), key=event.key.encode())
                break
            except BufferError:
                producer.poll(0.01)
        sent += 1
        if rate is not None:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0.002:
                producer.poll(0)
                time.sleep(ahead)
    producer.flush(120)
    return sent


def passthrough(bootstrap: str, source: str, sink: str, n: int, batch: int = 10_000,
                gc_threshold: int = 0) -> float:
    """Bare consume → produce of ``n`` messages; events per second.  ``gc_threshold`` is set as
    the service sets it (``processing.gc_threshold``), so both loops run under the same
    collector."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"passthrough-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "fetch.queue.backoff.ms": 10, "fetch.wait.max.ms": 100, **TEST_CLIENT,
    })
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "enable.idempotence": True, "batch.num.messages": 10_000,
                         "queue.buffering.max.messages": 1_000_000})
    consumer.subscribe([source])
    moved = 0
    first = None
    thresholds = gc.get_threshold()
    if gc_threshold:
        gc.set_threshold(gc_threshold, *thresholds[1:])
    try:
        while moved < n:
            messages = consumer.consume(batch, 1.0)
            if messages and first is None:
                first = time.perf_counter()
            produce = producer.produce
            for m in messages:
                if m.error() is None:
                    produce(sink, value=m.value(), key=m.key())
                    moved += 1
            producer.poll(0)
        producer.flush(120)
        consumer.commit(asynchronous=False)
    finally:
        gc.set_threshold(*thresholds)
        consumer.close()
    assert first is not None
    return n / (time.perf_counter() - first)


def service_rate(config: Config, bootstrap: str, n: int) -> float:
    from oml.service import Service

    service = Service(config, bootstrap_servers=bootstrap)
    service.run()
    return n / service.summary.busy_seconds


@dataclass
class Latency:
    """Milliseconds from an event's time (stamped when it was produced) to: ``processing``, the
    batch that predicted it; ``visible``, a ``read_committed`` consumer receiving its prediction
    (under exactly-once, after the transaction that holds it commits)."""

    processing: tuple[float, float, float]  # p50, p99, max
    visible: tuple[float, float, float]


def _percentiles(values: list[float]) -> tuple[float, float, float]:
    a = np.array(values, dtype=float)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(a.max())


class _CommittedReader(threading.Thread):
    """Reads a topic as a downstream ``read_committed`` consumer would, noting for each
    prediction the wall-clock time it arrived minus its event time."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, expected: int) -> None:
        super().__init__(daemon=True)
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap, "group.id": uuid.uuid4().hex,
            "isolation.level": "read_committed", "fetch.queue.backoff.ms": 1,
            "fetch.wait.max.ms": 10, "enable.auto.commit": False,
        })
        # assigned from offset 0 before the service writes, so nothing is missed
        self.consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self.expected = expected
        self.processing: list[float] = []
        self.visible: list[float] = []
        self.done = threading.Event()

    def run(self) -> None:
        try:
            deadline = time.monotonic() + 300
            while len(self.visible) < self.expected and not self.done.is_set() \
                    and time.monotonic() < deadline:
                for m in self.consumer.consume(10_000, 0.05):
                    if m.error() is None:
                        now = time.time() * 1000
                        p = json.loads(m.value() or b"{}")
                        self.visible.append(now - p["event_timestamp"])
                        self.processing.append(p["processed_timestamp"] - p["event_timestamp"])
        finally:
            self.consumer.close()


def latency(config: Config, bootstrap: str, n: int, n_keys: int, d: int, rate: float,
            partitions: int) -> Latency:
    """Run the service while ``n`` messages (``n // 2`` events) arrive at ``rate``/s, read its
    predictions as a downstream committed reader, and return both latencies."""
    from oml.service import Service

    admin = AdminClient({"bootstrap.servers": bootstrap})
    for f in admin.create_topics([NewTopic(config.topics.predictions, partitions)]).values():
        f.result(30)
    reader = _CommittedReader(bootstrap, config.topics.predictions, partitions, n // 2)
    reader.start()
    service = Service(config, bootstrap_servers=bootstrap)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not service.metrics.is_ready and time.monotonic() < deadline:
        time.sleep(0.1)
    _produce(bootstrap, config.topics.input,
             synthetic_events(n, n_keys, d, delay=100, seed=1), rate=rate, stamp=True)
    thread.join(300)
    reader.join(60)
    reader.done.set()
    if not reader.visible:
        raise RuntimeError("the committed reader saw no prediction")
    return Latency(_percentiles(reader.processing), _percentiles(reader.visible))


def run(
    *,
    events: int = 200_000,
    keys: int = 1000,
    features: int = 4,
    partitions: int = 4,
    guarantee: str = "exactly-once",
    algorithm: str = "pa",
    latency_rate: float = 5_000.0,
    latency_events: int = 20_000,
    repeat: int = 3,
    commit_interval_ms: int | None = None,
    bootstrap_servers: str | None = None,
    out: Path = DEFAULT_OUT,
    restore: int = 0,
) -> Result:
    from oml.kafka.broker import EmbeddedBroker

    with contextlib.ExitStack() as stack:
        if bootstrap_servers is None:
            bootstrap_servers = stack.enter_context(EmbeddedBroker()).bootstrap_servers
        run_id = uuid.uuid4().hex[:8]
        source = f"bench-{run_id}"
        admin = AdminClient({"bootstrap.servers": bootstrap_servers})
        futures = admin.create_topics([NewTopic(source, partitions),
                                       NewTopic(f"{source}.copy", partitions),
                                       NewTopic(f"{source}-lat", partitions)])
        for f in futures.values():
            f.result(30)
        events = _produce(bootstrap_servers, source,
                          synthetic_events(events, keys, features, delay=100))
        commit = ({} if commit_interval_ms is None
                  else {"processing.commit_interval_ms": commit_interval_ms})

        def config(topic: str, **extra: Any) -> Config:
            return load_config(None, {}, {
                "kafka.bootstrap_servers": bootstrap_servers, "kafka.group_id": f"g-{topic}",
                "kafka.instance_id": "bench", "kafka.librdkafka": TEST_CLIENT,
                "topics.input": topic, "model.algorithm": algorithm,
                "processing.guarantee": guarantee, "processing.exit_when_idle_s": 3.0,
                **commit, **extra,
            })

        bares, rates = [], []
        for i in range(repeat):  # alternate, so both see the same machine
            bares.append(passthrough(bootstrap_servers, source, f"{source}.copy", events,
                                     gc_threshold=config(source).processing.gc_threshold))
            rates.append(service_rate(
                config(source, **{"processing.max_events": events, "kafka.group_id": f"g{i}"}),
                bootstrap_servers, events,
            ))
        bare, rate = float(np.median(bares)), float(np.median(rates))
        lat_config = config(f"{source}-lat")
        lat = latency(lat_config, bootstrap_servers, latency_events, keys, features,
                      latency_rate, partitions)
        restored = None
        if restore:
            from oml.bench import restore as restore_bench

            restored = restore_bench.measure(
                bootstrap_servers, keys=restore, algorithm=algorithm,
                gc_threshold=lat_config.processing.gc_threshold,
            ).as_dict()
    result = Result(
        events=events, keys=keys, features=features, partitions=partitions, guarantee=guarantee,
        algorithm=algorithm, repeat=repeat, passthrough_events_per_s=round(bare),
        service_events_per_s=round(rate), passthrough_runs=[round(x) for x in bares],
        service_runs=[round(x) for x in rates], ratio=round(rate / bare, 3),
        target_ratio=TARGET_RATIO,
        commit_interval_ms=lat_config.processing.commit_every_ms, latency_rate=latency_rate,
        processing_latency_ms_p50=lat.processing[0], processing_latency_ms_p99=lat.processing[1],
        processing_latency_ms_max=lat.processing[2], visible_latency_ms_p50=lat.visible[0],
        visible_latency_ms_p99=lat.visible[1], visible_latency_ms_max=lat.visible[2],
        machine=f"{platform.machine()} {platform.python_implementation()} "
                f"{platform.python_version()}",
        restore=restored,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "throughput.json").write_text(json.dumps(asdict(result), indent=2) + "\n")
    return result


def add_arguments(p: Any) -> None:
    p.add_argument("--events", type=int, default=200_000, help="input messages (default 200000)")
    p.add_argument("--keys", type=int, default=1000, help="model keys (default 1000)")
    p.add_argument("--features", type=int, default=4, help="features per event (default 4)")
    p.add_argument("--partitions", type=int, default=4, help="input partitions (default 4)")
    p.add_argument("--guarantee", choices=["exactly-once", "at-least-once"],
                   default="exactly-once")
    p.add_argument("--algorithm", default="pa", help="learner (default pa)")
    p.add_argument("--latency-rate", type=float, default=5_000.0,
                   help="events/s offered in the latency run (default 5000)")
    p.add_argument("--latency-events", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3,
                   help="runs of each, alternating; medians are reported (default 3)")
    p.add_argument("--commit-interval-ms", type=int,
                   help="processing.commit_interval_ms of every service run (default: its own)")
    p.add_argument("--bootstrap-servers", help="a cluster to use instead of the embedded broker")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    p.add_argument("--restore", type=int, default=0, metavar="N",
                   help="also restore N keys' models from a changelog, against a bare read of "
                        "it, and measure the memory per key (oml/bench/restore.py)")


def main(parsed: Any) -> int:
    import argparse

    from oml.logs import configure_logging

    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    args = defaults.parse_args([])  # the bench parser leaves unset options out
    for name, value in vars(parsed).items():
        if name in vars(args):
            setattr(args, name, value)

    configure_logging("warning")
    r = run(events=args.events, keys=args.keys, features=args.features,
            partitions=args.partitions, guarantee=args.guarantee, algorithm=args.algorithm,
            latency_rate=args.latency_rate, latency_events=args.latency_events, repeat=args.repeat,
            commit_interval_ms=args.commit_interval_ms,
            bootstrap_servers=args.bootstrap_servers, out=args.out, restore=args.restore)
    print(f"{'pass-through (bare consume→produce)':<40} {r.passthrough_events_per_s:>10,.0f} ev/s"
          f"   runs: {r.passthrough_runs}")
    print(f"{'oml service (' + r.guarantee + ', ' + r.algorithm + ')':<40} "
          f"{r.service_events_per_s:>10,.0f} ev/s   runs: {r.service_runs}")
    verdict = "meets" if r.ratio >= r.target_ratio else "MISSES"
    print(f"{'ratio':<40} {r.ratio:>10.3f}   ({verdict} the {r.target_ratio} target)")
    print(f"latency at {r.latency_rate:,.0f} ev/s, commits every {r.commit_interval_ms} ms "
          "(event time to ...)")
    print(f"  {'... the batch that predicted it':<38} p50 {r.processing_latency_ms_p50:>5.0f} ms, "
          f"p99 {r.processing_latency_ms_p99:>5.0f} ms, max {r.processing_latency_ms_max:.0f} ms")
    print(f"  {'... a read_committed consumer seeing it':<38} p50 {r.visible_latency_ms_p50:>5.0f} "
          f"ms, p99 {r.visible_latency_ms_p99:>5.0f} ms, max {r.visible_latency_ms_max:.0f} ms")
    if r.restore is not None:
        x = r.restore
        print(f"restore of {x['keys']:,} {x['algorithm']} models ({x['records']:,} records): "
              f"{x['restore_s']:.2f} s, bare read {x['bare_read_s']:.2f} s, ratio {x['ratio']:.2f}"
              f"; {x['bytes_per_key']:,.0f} bytes per key ({x['array_bytes_per_key']:.0f} of them "
              f"the model's arrays)")
    print(f"written to {args.out / 'throughput.json'}")
    return 0 if r.ratio >= r.target_ratio else 1
