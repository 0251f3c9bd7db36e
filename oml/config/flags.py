"""The command line of ``oml run``: one flag per common setting, and ``--param``, ``--kafka``,
``--set`` for the rest; :func:`overrides_from_args` turns the parsed flags into overrides for
:func:`~oml.config.loading.load_config`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from oml.config.settings import ConfigError
from oml.config.values import Path, dotted_name, parse_value

# (flag, argparse dest, config path, help, further add_argument keywords): each sets one
# setting; add_run_arguments adds these and --config, --param, --kafka and --set.
_FLAGS: tuple[tuple[str, str, Path, str, dict[str, Any]], ...] = (
    (
        "--bootstrap-servers",
        "bootstrap_servers",
        ("kafka", "bootstrap_servers"),
        "Kafka bootstrap servers host:port[,...] (default: start the embedded broker)",
        {},
    ),
    ("--group-id", "group_id", ("kafka", "group_id"), "consumer group id (default: oml)", {}),
    ("--input", "input", ("topics", "input"), "input topic (default: events)", {}),
    (
        "--predictions",
        "predictions",
        ("topics", "predictions"),
        "predictions topic (default: {input}.predictions)",
        {},
    ),
    ("--algorithm", "algorithm", ("model", "algorithm"), "learner name (default: scw)", {}),
    (
        "--format",
        "format",
        ("messages", "format"),
        "message format of every topic (default: json)",
        {"choices": ["json", "avro"]},
    ),
    (
        "--schema-registry-url",
        "schema_registry_url",
        ("messages", "schema_registry_url"),
        "Confluent Schema Registry URL (Avro messages then use its wire format)",
        {},
    ),
    (
        "--guarantee",
        "guarantee",
        ("processing", "guarantee"),
        "delivery guarantee (default: exactly-once)",
        {"choices": ["exactly-once", "at-least-once"]},
    ),
    (
        "--max-events",
        "max_events",
        ("processing", "max_events"),
        "stop after this many input messages",
        {"metavar": "N"},
    ),
    (
        "--exit-when-idle",
        "exit_when_idle",
        ("processing", "exit_when_idle_s"),
        "stop after this many seconds without a message",
        {"metavar": "SECONDS"},
    ),
    (
        "--metrics-port",
        "metrics_port",
        ("metrics", "port"),
        "HTTP port for /metrics /healthz /readyz (default: 0, off)",
        {"metavar": "PORT"},
    ),
    (
        "--metrics-host",
        "metrics_host",
        ("metrics", "host"),
        "address the HTTP endpoint binds (default: 0.0.0.0; 127.0.0.1: this host only)",
        {"metavar": "ADDR"},
    ),
    (
        "--log-level",
        "log_level",
        ("log", "level"),
        "debug, info, warning, error or critical (default: info)",
        {},
    ),
    (
        "--log-format",
        "log_format",
        ("log", "format"),
        "log format (default: auto: console on a terminal, else JSON)",
        {"choices": ["auto", "json", "console"]},
    ),
)
FLAG_FOR_PATH: dict[Path, str] = {path: flag for flag, _, path, _, _ in _FLAGS}
FLAG_FOR_PATH[("model", "params")] = "--param"
FLAG_FOR_PATH[("kafka", "librdkafka")] = "--kafka"
"""The flag that sets a path, so that an error names the flag the user typed."""


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the configuration flags of ``oml run`` to ``parser``.

    Every flag defaults to None ("not given"), so only the flags given override the file and
    the environment.  Turn the parsed namespace into overrides with :func:`overrides_from_args`.
    """
    group = parser.add_argument_group("configuration")
    group.add_argument(
        "--config", metavar="PATH", default=None, help="TOML configuration file (or OML_CONFIG)"
    )
    for flag, dest, _path, help_text, extra in _FLAGS:
        group.add_argument(flag, dest=dest, default=None, help=help_text, **extra)
    group.add_argument(
        "--param",
        dest="param",
        action="append",
        metavar="NAME=VALUE",
        default=None,
        help="algorithm parameter (repeatable); VALUE is JSON or TOML: C=0.5, classes='[\"a\"]'",
    )
    group.add_argument(
        "--kafka",
        dest="kafka",
        action="append",
        metavar="NAME=VALUE",
        default=None,
        help="librdkafka setting passed to every client (repeatable): sasl.mechanism=PLAIN",
    )
    group.add_argument(
        "--set",
        dest="set",
        action="append",
        metavar="PATH=VALUE",
        default=None,
        help="any setting by its dotted path (repeatable): processing.batch_size=5000",
    )


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The overrides for :func:`load_config` from flags added by :func:`add_run_arguments`.

    >>> parser = argparse.ArgumentParser()
    >>> add_run_arguments(parser)
    >>> args = parser.parse_args(["--input", "clicks", "--param", "C=0.5", "--kafka", "acks=all"])
    >>> overrides_from_args(args)
    {'topics.input': 'clicks', 'model.params': {'C': 0.5}, 'kafka.librdkafka': {'acks': 'all'}}
    """
    out: dict[str, Any] = {}
    for _flag, dest, path, _help, _extra in _FLAGS:
        value = getattr(args, dest, None)
        if value is not None:
            out[dotted_name(path)] = value
    for entry in getattr(args, "set", None) or []:
        name, value = _split_pair(entry, "--set")
        out[name] = value
    params = getattr(args, "param", None)
    if params:
        out["model.params"] = {
            k: parse_value(v) for k, v in (_split_pair(p, "--param") for p in params)
        }
    kafka = getattr(args, "kafka", None)
    if kafka:
        out["kafka.librdkafka"] = dict(_split_pair(p, "--kafka") for p in kafka)
    return out


def _split_pair(entry: str, flag: str) -> tuple[str, str]:
    name, sep, value = entry.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"flag {flag}: expected NAME=VALUE, got {entry!r}")
    return name.strip(), value


def flags() -> Sequence[tuple[str, str]]:
    """(flag, dotted config path) for every flag that sets one setting (for the docs)."""
    return [(flag, dotted_name(path)) for flag, _, path, _, _ in _FLAGS]
