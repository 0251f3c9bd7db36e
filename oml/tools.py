"""The operator commands around the service: ``oml topics``, ``oml state show``,
``oml produce`` and ``oml demo``."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import structlog
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from oml.codecs.events import Event, EventEncoder
from oml.config import Config, add_run_arguments, config_from_args

log = structlog.get_logger()


def add_tool_parsers(commands: Any) -> None:
    topics = commands.add_parser("topics", help="create and check the service's topics")
    add_run_arguments(topics)
    topics.set_defaults(handler=topics_command)

    state = commands.add_parser("state", help="inspect model state in the changelog")
    actions = state.add_subparsers(metavar="ACTION")
    show = actions.add_parser("show", help="decode one key's model from the changelog")
    show.add_argument("model_key", metavar="KEY")
    show.add_argument("--arrays", action="store_true", help="print the arrays in full")
    add_run_arguments(show)
    show.set_defaults(handler=state_show)

    produce = commands.add_parser("produce", help="turn a CSV into input events")
    _add_stream_arguments(produce)
    produce.add_argument("--csv", type=Path, metavar="PATH", help="any CSV with a header line")
    produce.add_argument("--target", metavar="COL", help="the label column of --csv")
    produce.add_argument("--dataset", choices=["iris", "banknote"], help="a known data set")
    produce.add_argument("--data-dir", type=Path, metavar="DIR", help="default: $OML_DATA_DIR")
    add_run_arguments(produce)
    produce.set_defaults(handler=produce_command)

    demo = commands.add_parser(
        "demo", help="stream Iris or Banknote through the service, show live accuracy"
    )
    demo.add_argument("--dataset", choices=["iris", "banknote"], default="banknote")
    demo.add_argument("--data-dir", type=Path, metavar="DIR", help="default: $OML_DATA_DIR")
    _add_stream_arguments(demo)
    demo.add_argument(
        "--rate", type=float, default=500.0, help="events per second to send (default 500)"
    )
    add_run_arguments(demo)
    demo.set_defaults(handler=demo_command)


def _add_stream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=int, default=1, help="spread rows over N model keys")
    p.add_argument("--delay", type=int, default=10, help="feedback comes K events later")
    p.add_argument("--passes", type=int, default=1, help="passes over the rows")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--no-feedback", action="store_true", help="unlabeled events only")


# ------------------------------------------------------------------------------------ streams


def dataset_events(
    rows: Sequence[dict[str, float]],
    labels: Sequence[Any],
    *,
    n_keys: int = 1,
    delay: int = 10,
    passes: int = 1,
    seed: int | None = 0,
    feedback: bool = True,
    start_ms: int = 1_700_000_000_000,
) -> Iterator[Event]:
    """The rows as a keyed event stream: each row an unlabeled event, and ``delay`` events
    later its feedback (same event id and key, with the label).

    Row ``i`` of pass ``p`` is event ``p-i`` of key ``key-{i % n_keys}``; the order within a
    pass is ``numpy.random.default_rng(seed).permutation`` (file order if ``seed`` is None).

    >>> [(e.event_id, e.label) for e in dataset_events([{"x": 1.0}, {"x": 2.0}], [0, 1], delay=1,
    ...                                                 seed=None)]
    [('0-0', None), ('0-1', None), ('0-0', 0), ('0-1', 1)]
    """
    n = len(rows)
    order = list(range(n)) if seed is None else np.random.default_rng(seed).permutation(n).tolist()
    pending: list[Event] = []
    clock = start_ms
    for p in range(passes):
        for i in order:
            key = f"key-{i % n_keys}"
            event_id = f"{p}-{i}"
            clock += 1
            yield Event(event_id, key, dict(rows[i]), None, clock)
            if feedback:
                pending.append(Event(event_id, key, None, labels[i], clock))
                if len(pending) > delay:
                    yield pending.pop(0)
    yield from pending


def _load_rows(args: argparse.Namespace) -> tuple[list[dict[str, float]], list[Any]]:
    from oml.bench import datasets

    if getattr(args, "csv", None):
        if not args.target:
            raise SystemExit("oml: --csv needs --target COL")
        ds = datasets.load_csv(args.csv, args.target)
    else:
        name = getattr(args, "dataset", None) or "banknote"
        ds = datasets.load(name, data_dir=args.data_dir)
    return ds.X, ds.y


def produce_events(config: Config, bootstrap: str, events: Iterator[Event],
                   rate: float | None = None) -> int:
    """Write events to the input topic, keyed by model key; returns how many."""
    encoder = EventEncoder.from_config(config)
    producer = Producer({"bootstrap.servers": bootstrap, **config.kafka.librdkafka,
                         "linger.ms": 5, "partitioner": "murmur2_random"})
    sent = 0
    started = time.monotonic()
    for event in events:
        producer.produce(config.topics.input, value=encoder(event), key=event.key.encode())
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(60)
    return sent


def ensure_service_topics(config: Config, bootstrap: str, input_partitions: int = 1) -> Any:
    """The input topic (created if missing) and the service's own topics."""
    from oml.kafka import clients, topics

    admin = AdminClient(clients.admin_config(bootstrap, config.kafka.librdkafka))
    existing = topics.topic_partitions(admin)
    t = config.topics
    if t.input not in existing:
        from confluent_kafka.admin import NewTopic

        admin.create_topics([NewTopic(t.input, input_partitions)])[t.input].result(30)
    return topics.ensure_topics(
        admin, t.input, [t.models, t.cache], [t.predictions, t.metrics, t.dead_letter]
    )


def _needs_cluster(config: Config) -> str:
    if not config.kafka.bootstrap_servers:
        raise SystemExit(
            "oml: this command needs a running cluster: give --bootstrap-servers "
            "(oml run logs the embedded broker's address when it starts one)"
        )
    return config.kafka.bootstrap_servers


# ----------------------------------------------------------------------------------- commands


def _quiet() -> None:
    """Operator commands print their answer on stdout; logs only for warnings, on stderr."""
    from oml.logs import configure_logging

    configure_logging("warning")


def topics_command(args: argparse.Namespace) -> int:
    _quiet()
    config = config_from_args(args)
    described = ensure_service_topics(config, _needs_cluster(config))
    for line in described.lines():
        print(line)
    return 0


def state_show(args: argparse.Namespace) -> int:
    """The key's last model record, found in whichever changelog partition holds it."""
    from oml.codecs.state import decode_state, model_from_state
    from oml.kafka import clients, topics
    from oml.kafka.restore import ChangelogReader

    _quiet()
    config = config_from_args(args)
    bootstrap = _needs_cluster(config)
    admin = AdminClient(clients.admin_config(bootstrap, config.kafka.librdkafka))
    n = topics.topic_partitions(admin).get(config.topics.models)
    if n is None:
        print(f"oml: no changelog topic {config.topics.models!r}", file=sys.stderr)
        return 1
    wanted = args.model_key.encode()
    found: tuple[bytes | None, int, int] | None = None
    with ChangelogReader({"bootstrap.servers": bootstrap, **config.kafka.librdkafka}) as reader:
        for p in range(n):
            for key, value, offset in reader.read(config.topics.models, p):
                if key == wanted:
                    found = (value, p, offset)
    if found is None or found[0] is None:
        print(f"oml: no model for key {args.model_key!r} in {config.topics.models}",
              file=sys.stderr)
        return 1
    value, partition, offset = found
    state = decode_state(value or b"")
    model_from_state(state)  # proves the record loads, exactly as restore would
    arrays = {
        name: a.tolist() if args.arrays else {"shape": list(a.shape), "dtype": str(a.dtype)}
        for name, a in state.arrays.items()
    }
    print(json.dumps({
        "key": args.model_key, "partition": partition, "offset": offset,
        "algorithm": state.algorithm, "state_version": state.version, "params": state.params,
        "features": state.features, "labels": state.labels, "n_updates": state.n_updates,
        "extra": state.extra, "arrays": arrays,
    }, indent=2, default=str))
    return 0


def produce_command(args: argparse.Namespace) -> int:
    _quiet()
    config = config_from_args(args)
    bootstrap = _needs_cluster(config)
    rows, labels = _load_rows(args)
    ensure_service_topics(config, bootstrap)
    sent = produce_events(config, bootstrap, dataset_events(
        rows, labels, n_keys=args.keys, delay=args.delay, passes=args.passes, seed=args.seed,
        feedback=not args.no_feedback,
    ))
    print(f"produced {sent} events to {config.topics.input}")
    return 0


def demo_command(args: argparse.Namespace) -> int:
    """Stream a data set with delayed feedback; print the service's live accuracy.

    With ``--bootstrap-servers`` the service is the one already running there (``oml run``);
    without, the demo starts the embedded broker and a service of its own.
    """
    from oml.cli import kafka
    from oml.logs import configure_logging

    config = config_from_args(args)
    configure_logging("warning", config.log.format)
    rows, labels = _load_rows(args)
    with kafka(config) as bootstrap:
        service = None
        if not config.kafka.bootstrap_servers:
            from oml.service import Service

            ensure_service_topics(config, bootstrap)
            from oml.cli import EMBEDDED_CONSUMER

            service = Service(config, bootstrap_servers=bootstrap,
                              consumer_settings=EMBEDDED_CONSUMER)
            threading.Thread(target=service.run, daemon=True, name="oml-service").start()
        events = dataset_events(rows, labels, n_keys=args.keys, delay=args.delay,
                                passes=args.passes, seed=args.seed)
        total = len(rows) * args.passes
        producer = threading.Thread(
            target=produce_events, args=(config, bootstrap, events, args.rate), daemon=True
        )
        producer.start()
        _show_accuracy(config, bootstrap, labels_by_id={
            f"{p}-{i}": y for p in range(args.passes) for i, y in enumerate(labels)
        }, total=total)
        if service is not None:
            service.stop()
            time.sleep(1)
    return 0


def _show_accuracy(config: Config, bootstrap: str, labels_by_id: dict[str, Any],
                   total: int) -> None:
    """Read the predictions topic; print accuracy so far every 0.5 s until all are in."""
    from oml.codecs.outputs import PredictionCodec

    codec = PredictionCodec.from_config(config)
    consumer = Consumer({"bootstrap.servers": bootstrap, **config.kafka.librdkafka,
                         "group.id": f"oml-demo-{time.time_ns()}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10})
    consumer.subscribe([config.topics.predictions])
    seen = correct = 0
    last_print = time.monotonic()
    deadline = time.monotonic() + 120 + total / 100
    try:
        while seen < total and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                error = m.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        print(f"consume error: {error}", file=sys.stderr)
                    continue
                prediction = codec.decode(m.value())
                seen += 1
                correct += prediction.prediction == labels_by_id.get(prediction.event_id)
            if time.monotonic() - last_print > 0.5 or seen >= total:
                last_print = time.monotonic()
                print(f"\rpredictions {seen:>6}/{total}  accuracy so far "
                      f"{correct / max(seen, 1):.4f}", end="", flush=True)
    finally:
        print()
        consumer.close()


__all__ = ["TopicPartition", "dataset_events", "produce_events"]
