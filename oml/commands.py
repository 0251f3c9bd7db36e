"""The operator commands around the service: ``oml topics``, ``oml state show``,
``oml produce`` and ``oml demo``, and the checks ``oml run`` makes before it starts.

Each command takes the parsed arguments and returns its exit code; a failure is raised as an
exception that :mod:`oml.exits` maps to a documented code (the CLI prints it as one line).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError
from confluent_kafka.admin import AdminClient, NewTopic

from oml.config import Config, config_from_args
from oml.exits import CommandError, Exit
from oml.kafka import clients, topics
from oml.logs import librdkafka_logger

log = structlog.get_logger()

EMBEDDED_INPUT_PARTITIONS = 4
"""Partitions of the input topic made on the embedded broker (which starts empty)."""


# ------------------------------------------------------------------------------------ cluster


def admin_client(config: Config, bootstrap: str) -> AdminClient:
    return AdminClient(clients.admin_config(bootstrap, config.kafka.librdkafka))


def input_partitions(config: Config, bootstrap: str, admin: AdminClient | None = None) -> int:
    """The input topic's partition count, read within ``kafka.connect_timeout_s``.

    Raises:
        TopicError: the cluster did not answer in time (exit code 4).
        TopicMissing: the input topic does not exist; oml never creates it (exit code 5).
    """
    admin = admin or admin_client(config, bootstrap)
    existing = topics.topic_partitions(admin, timeout=config.kafka.connect_timeout_s)
    name = config.topics.input
    if name not in existing:
        raise topics.TopicMissing(
            f"the input topic {name!r} does not exist on {bootstrap}; create it first (its "
            "partition count sets oml's parallelism), or name another one with --input"
        )
    return existing[name]


def create_embedded_input(config: Config, bootstrap: str) -> None:
    """On the embedded broker only (it starts empty): the input topic, so there is one to
    produce to.  On a real cluster the input is the user's and is never created."""
    admin = admin_client(config, bootstrap)
    name = config.topics.input
    if name not in topics.topic_partitions(admin, timeout=config.kafka.connect_timeout_s):
        admin.create_topics([NewTopic(name, EMBEDDED_INPUT_PARTITIONS)])[name].result(30)


def create_embedded_topics(config: Config, bootstrap: str) -> None:
    """The input topic and every topic of the service, on the embedded broker: the demo reads
    the predictions topic from the start, so it must exist before the demo subscribes (a
    consumer subscribed to a missing topic may only see it at its next metadata refresh)."""
    create_embedded_input(config, bootstrap)
    t = config.topics
    topics.ensure_topics(admin_client(config, bootstrap), t.input, [t.models, t.cache],
                         [t.predictions, t.metrics, t.dead_letter])


def _needs_cluster(config: Config) -> str:
    if not config.kafka.bootstrap_servers:
        raise CommandError(
            "this command needs a running cluster: give --bootstrap-servers "
            "(oml run logs the embedded broker's address when it starts one)", Exit.USAGE,
        )
    return config.kafka.bootstrap_servers


def check_model(config: Config) -> None:
    """Build the configured learner once, so a bad ``--algorithm`` or ``--param`` is a usage
    error before any broker is started or contacted."""
    from oml.config import ConfigError
    from oml.plugins import default_registry

    try:
        default_registry().create(config.model.algorithm, dict(config.model.params))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"algorithm {config.model.algorithm!r}: {exc} (model.params / --param)"
        ) from None


# ----------------------------------------------------------------------------------- commands


def _quiet(config: Config | None = None) -> None:
    """Operator commands print their answer on stdout; logs only for warnings, on stderr."""
    from oml.logs import configure_logging

    configure_logging("warning", config.log.format if config else "auto")


def topics_command(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    _quiet(config)
    bootstrap = _needs_cluster(config)
    admin = admin_client(config, bootstrap)
    input_partitions(config, bootstrap, admin)  # fast, one-line failure if absent
    t = config.topics
    described = topics.ensure_topics(
        admin, t.input, [t.models, t.cache], [t.predictions, t.metrics, t.dead_letter],
        timeout=max(config.kafka.connect_timeout_s, 30.0),
    )
    for line in described.lines():
        print(line)
    return 0


def state_show(args: argparse.Namespace) -> int:
    """The key's last model record, found in whichever changelog partition holds it."""
    from oml.codecs.state import decode_state, model_from_state
    from oml.kafka.restore import ChangelogReader

    config = config_from_args(args)
    _quiet(config)
    bootstrap = _needs_cluster(config)
    existing = topics.topic_partitions(
        admin_client(config, bootstrap), timeout=config.kafka.connect_timeout_s
    )
    n = existing.get(config.topics.models)
    if n is None:
        raise CommandError(f"no changelog topic {config.topics.models!r}", Exit.TOPIC)
    wanted = args.model_key.encode()
    found: tuple[bytes | None, int, int] | None = None
    with ChangelogReader({"bootstrap.servers": bootstrap, **config.kafka.librdkafka}) as reader:
        for p in range(n):
            for key, value, offset in reader.read(config.topics.models, p):
                if key == wanted:
                    found = (value, p, offset)
    if found is None or found[0] is None:
        raise CommandError(f"no model for key {args.model_key!r} in {config.topics.models}")
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


def _load_rows(args: argparse.Namespace) -> tuple[list[dict[str, float]], list[Any]]:
    from oml.bench import datasets

    if getattr(args, "csv", None):
        if not args.target:
            raise CommandError("--csv needs --target COL", Exit.USAGE)
        ds = datasets.load_csv(args.csv, args.target)
    else:
        ds = datasets.load(getattr(args, "dataset", None) or "banknote", data_dir=args.data_dir)
    return ds.X, ds.y


def produce_command(args: argparse.Namespace) -> int:
    from oml.replay import dataset_events, produce_events

    config = config_from_args(args)
    _quiet(config)
    bootstrap = _needs_cluster(config)
    rows, labels = _load_rows(args)
    input_partitions(config, bootstrap)
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
    from oml.kafka.broker import EMBEDDED_CONSUMER, cluster
    from oml.observability import ServiceMetrics
    from oml.replay import dataset_events, produce_events

    config = config_from_args(args)
    _quiet(config)
    rows, labels = _load_rows(args)
    embedded = not config.kafka.bootstrap_servers
    if embedded:
        check_model(config)
    metrics = ServiceMetrics()
    with cluster(config.kafka.bootstrap_servers) as bootstrap:
        service = None
        if embedded:
            from oml.service import Service

            create_embedded_topics(config, bootstrap)
            service = Service(config, bootstrap_servers=bootstrap, metrics=metrics,
                              consumer_settings=EMBEDDED_CONSUMER)
            threading.Thread(target=service.run, daemon=True, name="oml-service").start()
        else:
            input_partitions(config, bootstrap)
        events = dataset_events(rows, labels, n_keys=args.keys, delay=args.delay,
                                passes=args.passes, seed=args.seed)
        total = len(rows) * args.passes
        producer = threading.Thread(
            target=produce_events, args=(config, bootstrap, events, args.rate), daemon=True
        )
        producer.start()
        _show_accuracy(config, bootstrap, labels_by_id={
            f"{p}-{i}": y for p in range(args.passes) for i, y in enumerate(labels)
        }, total=total, assigned=(lambda: metrics.is_ready) if embedded else None)
        if service is not None:
            service.stop()
            time.sleep(1)
    return 0


class _Status:
    """One status line: redrawn in place on a terminal, else a plain line when it changes
    (at most every ``every_s`` seconds off a terminal)."""

    def __init__(self, stream: Any = None, every_s: float = 2.0) -> None:
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if not self.tty else 0.5
        self.last_text = ""
        self.last_at = 0.0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if text == self.last_text or (not force and now - self.last_at < self.every_s):
            return
        if self.tty:
            self.stream.write(f"\r{text:<{len(self.last_text)}}")
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.last_text, self.last_at = text, now

    def close(self) -> None:
        if self.tty and self.last_text:
            self.stream.write("\n")
            self.stream.flush()


WAITING = "waiting for a partition assignment (the service is joining its consumer group)..."


def _show_accuracy(config: Config, bootstrap: str, labels_by_id: dict[str, Any], total: int,
                   assigned: Any = None) -> None:
    """Read the predictions topic; show accuracy so far until all predictions are in.

    ``assigned``: a callable saying whether the service has its partitions yet (the embedded
    demo's own service); until it does, or until the first prediction, the line says so.
    """
    from oml.codecs.outputs import PredictionCodec

    codec = PredictionCodec.from_config(config)
    consumer = Consumer({"bootstrap.servers": bootstrap, **config.kafka.librdkafka,
                         "group.id": f"oml-demo-{time.time_ns()}",
                         "isolation.level": "read_committed", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False, "fetch.queue.backoff.ms": 10,
                         "topic.metadata.refresh.interval.ms": 2000,  # see a late topic soon
                         "logger": librdkafka_logger()})
    consumer.subscribe([config.topics.predictions])
    seen = correct = 0
    status = _Status()
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
            waiting = seen == 0 and (assigned is None or not assigned())
            if waiting:
                status.show(WAITING, force=not status.last_text)
            else:
                status.show(f"predictions {seen:>6}/{total}  accuracy so far "
                            f"{correct / max(seen, 1):.4f}", force=seen >= total)
    finally:
        status.close()
        consumer.close()
