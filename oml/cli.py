"""The ``oml`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from oml.config import add_run_arguments, config_from_args
from oml.exits import Exit, exit_code, one_line

log = structlog.get_logger()

DESCRIPTION = """\
oml reads events from a Kafka topic, keeps one online-learning model per key, writes a
prediction for every event and learns from every label that arrives later. Models survive
restarts in compacted changelog topics; with no cluster configured, oml starts an in-memory
broker on loopback for trying it out.

  oml run --input clicks --algorithm scw --metrics-port 9100
  oml demo --dataset iris
  oml algorithms

Settings come from a TOML file (--config), OML_* environment variables and flags, in that
order of precedence (last wins). Exit codes: 0 ok, 1 failed, 2 usage or configuration error,
3 data set error, 4 Kafka unreachable, 5 input topic missing or changelog mismatch, 6 fenced
by another instance with the same instance id, 7 the cluster lost the service's topics or
offsets."""


def version() -> str:
    try:
        return importlib.metadata.version("oml-stream")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Parse, run the command, and turn every expected failure into one line and its code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return Exit.USAGE
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("oml: interrupted", file=sys.stderr)
        return Exit.INTERRUPTED
    except Exception as exc:
        code = exit_code(exc)
        if code is None:
            raise  # a bug in oml: the traceback is the report
        print(f"oml: {one_line(exc)}", file=sys.stderr)
        return int(code)


def service_flags() -> argparse.ArgumentParser:
    """The configuration flags shared by ``run``, ``topics``, ``state show``, ``produce`` and
    ``demo`` (a parent parser: each command gets the same flags, help and defaults)."""
    parent = argparse.ArgumentParser(add_help=False)
    add_run_arguments(parent)
    return parent


def build_parser() -> argparse.ArgumentParser:
    from oml.bench.cli import add_parser as add_bench

    parser = argparse.ArgumentParser(
        prog="oml", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    flags = [service_flags()]

    run = commands.add_parser(
        "run", parents=flags, help="run the service",
        description="Consume the input topic, predict and learn per key, until stopped.",
    )  # fmt: skip
    run.set_defaults(handler=run_service)

    algorithms = commands.add_parser(
        "algorithms", help="the registered learners and their parameters",
        description="List the registered learners (built-in and plugins) with their "
        "parameters and defaults.",
    )  # fmt: skip
    _add_listing_arguments(algorithms)
    algorithms_commands = algorithms.add_subparsers(metavar="ACTION")
    listing = algorithms_commands.add_parser("list", help="every learner, its parameters")
    _add_listing_arguments(listing)

    topics = commands.add_parser(
        "topics", parents=flags, help="check the input topic, create and check oml's topics",
        description="Check that the input topic exists (it is never created: its partition "
        "count is yours to choose), create the changelog and output topics that are missing, "
        "check the existing ones, and print one line per topic.",
    )  # fmt: skip
    topics.set_defaults(handler=_command("topics_command"))

    state = commands.add_parser(
        "state", help="inspect model state in the changelog",
        description="Inspect the model state that the service keeps in its changelog topic.",
    )  # fmt: skip
    actions = state.add_subparsers(metavar="ACTION")
    show = actions.add_parser(
        "show", parents=flags, help="decode one key's model from the changelog",
        description="Find KEY's last model record in the changelog and print it as JSON.",
    )  # fmt: skip
    show.add_argument("model_key", metavar="KEY")
    show.add_argument("--arrays", action="store_true", help="print the arrays in full")
    show.set_defaults(handler=_command("state_show"))

    produce = commands.add_parser(
        "produce", parents=flags, help="turn a CSV into input events",
        description="Write a data set to the input topic as events, each followed --delay "
        "events later by its feedback (the label). Event times are the current time.",
    )  # fmt: skip
    _add_data_arguments(produce)
    produce.add_argument("--csv", type=Path, metavar="PATH", help="any CSV with a header line")
    produce.add_argument("--target", metavar="COL", help="the label column of --csv")
    _add_stream_arguments(produce)
    produce.set_defaults(handler=_command("produce_command"))

    demo = commands.add_parser(
        "demo", parents=flags, help="stream Iris or Banknote through the service, show accuracy",
        description="Stream a data set through the service with delayed feedback and show its "
        "live accuracy. Without --bootstrap-servers it starts the embedded broker and a "
        "service of its own; with it, it feeds the service already running there.",
    )  # fmt: skip
    _add_data_arguments(demo)
    _add_stream_arguments(demo)
    demo.add_argument(
        "--rate", type=float, default=500.0, help="events per second to send (default 500)"
    )
    demo.set_defaults(handler=_command("demo_command"))

    add_bench(commands)
    return parser


def _command(name: str) -> Any:
    """A handler that imports :mod:`oml.commands` only when its command runs."""

    def handler(args: argparse.Namespace) -> int:
        from oml import commands

        return int(getattr(commands, name)(args))

    return handler


def _add_listing_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=list_algorithms)


def _add_data_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset", choices=["iris", "banknote"], default="banknote",
        help="a data set shipped with oml (default: banknote)",
    )  # fmt: skip
    p.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help="folder with other copies of iris.csv / banknote.csv (default: $OML_DATA_DIR, "
        "else the copies shipped with oml)",
    )  # fmt: skip


def _add_stream_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=int, default=1, help="spread rows over N model keys")
    p.add_argument("--delay", type=int, default=10, help="feedback comes K events later")
    p.add_argument("--passes", type=int, default=1, help="passes over the rows")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--no-feedback", action="store_true", help="unlabeled events only")


def run_service(args: argparse.Namespace) -> int:
    from oml.commands import check_model, create_embedded_input, input_partitions
    from oml.http import HealthServer
    from oml.kafka.broker import EMBEDDED_CONSUMER, cluster
    from oml.lifecycle import ShutdownGuard, failure_of
    from oml.logs import configure_logging
    from oml.observability import ServiceMetrics
    from oml.service import Service

    config = config_from_args(args)
    configure_logging(config.log.level, config.log.format)
    check_model(config)  # a bad --algorithm / --param fails before any broker is touched
    metrics = ServiceMetrics()
    with contextlib.ExitStack() as stack:
        bootstrap = stack.enter_context(cluster(config.kafka.bootstrap_servers))
        embedded = not config.kafka.bootstrap_servers
        if embedded:  # a fresh broker has no topics: make the input one to produce to
            create_embedded_input(config, bootstrap)
        else:  # fail fast, in one line, if the cluster is unreachable or has no input topic
            input_partitions(config, bootstrap)
        if config.metrics.port:
            server = stack.enter_context(HealthServer.from_config(config.metrics, metrics))
            log.info("http_endpoint_started", url=server.url)
        service = Service(config, bootstrap_servers=bootstrap, metrics=metrics,
                          consumer_settings=EMBEDDED_CONSUMER if embedded else {})
        guard = ShutdownGuard(service.stop).install()  # SIGTERM: stop; exit within 25 s anyway
        guard.arm_on(lambda: metrics.failure is not None)  # and so after a broker loss
        try:
            service.run()
        except Exception as exc:  # logged by the run's last line, service_failed, with the cause
            error, _, code, _ = failure_of(service.error or exc)  # the line and the code agree
            metrics.set_failed(error)
            return int(code)
        finally:
            guard.done()
        if service.watch is not None and service.watch.failure is not None:
            return int(failure_of(service.watch.failure)[2])
    return Exit.OK


def list_algorithms(args: argparse.Namespace) -> int:
    from oml.plugins import load_registry, parameters

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
