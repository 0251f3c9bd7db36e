"""The ``oml`` command: a thin argparse layer over the modules that do the work."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import structlog

from oml.config import Config, ConfigError, add_run_arguments, config_from_args
from oml.registry import UnknownAlgorithm, load_registry, parameters

log = structlog.get_logger()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except (ConfigError, UnknownAlgorithm) as exc:
        print(f"oml: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    from oml.bench.cli import add_parser as add_bench
    from oml.tools import add_tool_parsers

    parser = argparse.ArgumentParser(prog="oml", description=__doc__)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")

    run = commands.add_parser("run", help="run the service")
    add_run_arguments(run)
    run.set_defaults(handler=run_service)

    algorithms = commands.add_parser("algorithms", help="registered learners")
    algorithms_commands = algorithms.add_subparsers(metavar="ACTION")
    listing = algorithms_commands.add_parser("list", help="every learner, its parameters")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=list_algorithms)

    add_bench(commands)
    add_tool_parsers(commands)
    return parser


EMBEDDED_CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
"""On the embedded broker a group join takes half the session timeout: keep it short there."""


@contextlib.contextmanager
def kafka(config: Config) -> Iterator[str]:
    """The configured cluster, or the embedded broker for as long as the command runs."""
    if config.kafka.bootstrap_servers:
        yield config.kafka.bootstrap_servers
        return
    from oml.kafka.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        log.info(
            "embedded_broker_started", bootstrap_servers=broker.bootstrap_servers,
            note="no kafka.bootstrap_servers configured: memory-only Tansu on loopback",
        )
        yield broker.bootstrap_servers


def run_service(args: argparse.Namespace) -> int:
    from oml.logs import configure_logging
    from oml.observability import HealthServer, ServiceMetrics
    from oml.service import RestoreError, Service

    config = config_from_args(args)
    configure_logging(config.log.level, config.log.format)
    metrics = ServiceMetrics()
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(kafka(config))
        if config.metrics.port:
            server = stack.enter_context(HealthServer(config.metrics.port, metrics))
            log.info("http_endpoint_started", url=server.url)
        embedded = {} if config.kafka.bootstrap_servers else EMBEDDED_CONSUMER
        if embedded:  # a fresh broker has no topics: make the input one to produce to
            from oml.tools import ensure_service_topics

            ensure_service_topics(config, bootstrap, input_partitions=4)
        service = Service(config, bootstrap_servers=bootstrap, metrics=metrics,
                          consumer_settings=embedded)
        service.install_signal_handlers()
        try:
            service.run()
        except RestoreError as exc:
            log.error("restore_failed", error=str(exc))
            return 1
    return 0


def list_algorithms(args: argparse.Namespace) -> int:
    registry = load_registry()
    rows: dict[str, dict[str, Any]] = {
        name: {
            "class": f"{cls.__module__}.{cls.__qualname__}",
            "parameters": parameters(cls),
        }
        for name, cls in sorted(registry.classes.items())
    }
    if args.json:
        print(json.dumps({"algorithms": rows, "broken": registry.broken}, default=repr, indent=2))
        return 0
    for name, row in rows.items():
        params = ", ".join(f"{k}={v!r}" for k, v in row["parameters"].items())
        print(f"{name:<16} {row['class']}\n{'':<16} {params or '(no parameters)'}")
    for name, error in sorted(registry.broken.items()):
        print(f"{name:<16} BROKEN: {error}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
