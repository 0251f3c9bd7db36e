"""The service's one typed configuration object, and how it is built.

Sources, lowest precedence first: the defaults written below, a TOML file, ``OML_*`` environment
variables, command-line flags.  Every source is checked against the same typed structure: an
unknown key or a value of the wrong type is a :class:`ConfigError` that names the source and the
key, so a typo is never silently ignored.

The TOML file mirrors the structure: one table per section (``[kafka]``, ``[topics]``, ...).
An environment variable names a setting by its path, upper-cased, with ``__`` between parts:
``OML_KAFKA__GROUP_ID``, ``OML_PROCESSING__BATCH_SIZE``, ``OML_MESSAGES__FIELDS__EVENT_ID``.
``OML_BOOTSTRAP_SERVERS`` is a short alias of ``OML_KAFKA__BOOTSTRAP_SERVERS`` and
``OML_KAFKA_CONFIG`` (a JSON object) of ``OML_KAFKA__LIBRDKAFKA``: the test suite names an
external cluster with the same two.  ``OML_CONFIG`` names the TOML file when no path is given.  Variables starting with ``OML_TEST_``
are left alone (they belong to test suites).  See ``docs/config-guide.md`` for the full list.

>>> config = load_config(None, {"OML_KAFKA__GROUP_ID": "fraud"}, {"topics.input": "clicks"})
>>> config.kafka.group_id, config.topics.predictions, config.topics.models
('fraud', 'clicks.predictions', 'fraud.clicks.models')
>>> load_config(None, {"OML_KAFKA__GROUPID": "x"}, {})
Traceback (most recent call last):
...
oml.config.ConfigError: env OML_KAFKA__GROUPID: unknown setting 'kafka.groupid' (did you mean 'kafka.group_id'?)
"""  # noqa: E501

from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import tomllib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

Scalar = str | int | float | bool
"""A librdkafka or schema-registry client setting value."""

Format = Literal["json", "avro"]
Guarantee = Literal["exactly-once", "at-least-once"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]
TimestampSkew = Literal["dead_letter", "clamp"]

ENV_PREFIX = "OML_"
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "OML_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "OML_KAFKA_CONFIG": ("kafka", "librdkafka"),
}
"""Short names, shared with the test suite's way of naming an external cluster."""
ENV_CONFIG_FILE = "OML_CONFIG"
ENV_IGNORED_PREFIX = "OML_TEST_"
ENV_IGNORED = frozenset({"OML_DATA_DIR", "OML_CACHE_DIR"})
"""Variables of other oml commands (``oml bench``'s data sets), not service settings."""

# How a free-form table's entries are read (field metadata "table"):
#   "settings": client settings (librdkafka, schema registry): dotted names, scalar values; from
#               the environment, OML_..._SASL_MECHANISM means "sasl.mechanism".
#   "params":   algorithm parameters: names kept as written, any TOML value.
_SETTINGS = "settings"
_PARAMS = "params"


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the source and the key."""


# --------------------------------------------------------------------------------------------
# the configuration object


@dataclass(frozen=True)
class KafkaConfig:
    """How to reach Kafka (TOML table ``[kafka]``).

    Attributes:
        bootstrap_servers: ``host:port[,host:port...]``; None (the default) starts the embedded
            broker.  Also read from ``OML_BOOTSTRAP_SERVERS``.
        group_id: the consumer group, and the prefix of the changelog topics.
        instance_id: this instance's stable name within the group; the transactional id is
            ``{group_id}-{instance_id}``, so a restarted instance fences its own zombie, and the
            consumer's ``group.instance.id`` (static membership).  Two instances must not share
            one.  Default (None): an id unique to the process, and dynamic membership.
        connect_timeout_s: how long the ``oml`` commands wait for the cluster's first answer
            before giving up with a one-line error (exit code 4).
        librdkafka: any librdkafka settings passed through to every client as written
            (security.protocol, sasl.*, ssl.*, ...); TOML table ``[kafka.librdkafka]``.  Names
            are not checked here: librdkafka rejects an unknown one when the client is created.
    """

    bootstrap_servers: str | None = None
    group_id: str = "oml"
    connect_timeout_s: float = field(default=15.0, metadata={"min": 1})
    instance_id: str | None = None
    librdkafka: dict[str, Scalar] = field(default_factory=dict, metadata={"table": _SETTINGS})


@dataclass(frozen=True)
class TopicsConfig:
    """Topic names (TOML table ``[topics]``).  An empty name is derived from the input topic.

    Attributes:
        input: the keyed event stream (events and feedback).
        predictions: default ``{input}.predictions``.
        metrics: default ``{input}.metrics``.
        dead_letter: default ``{input}.dlq``.
        models: compacted changelog of the models' state, default ``{group_id}.{input}.models``.
        cache: compacted changelog of the feature cache, default ``{group_id}.{input}.cache``.
    """

    input: str = field(default="events", metadata={"min_len": 1})
    predictions: str = ""
    metrics: str = ""
    dead_letter: str = ""
    models: str = ""
    cache: str = ""

    def resolved(self, group_id: str) -> TopicsConfig:
        """A copy with every empty name replaced by its derived default."""
        i = self.input
        return TopicsConfig(
            input=i,
            predictions=self.predictions or f"{i}.predictions",
            metrics=self.metrics or f"{i}.metrics",
            dead_letter=self.dead_letter or f"{i}.dlq",
            models=self.models or f"{group_id}.{i}.models",
            cache=self.cache or f"{group_id}.{i}.cache",
        )


@dataclass(frozen=True)
class ModelConfig:
    """The learner every key gets (TOML table ``[model]``).

    Attributes:
        algorithm: an ``oml.algorithms`` entry-point name (``scw``, ``pa``, ``pa-regressor``...).
        params: constructor arguments, TOML table ``[model.params]``; checked by the registry.
        max_features: the most features one event may have, and the most feature names the
            service admits in all (every model row carries one number per name); an event beyond
            either goes to the dead-letter topic as ``too_many_features``.  None: no cap.
        n_features: the length list-shaped features must have.  Unset, it is
            ``len(messages.feature_names)`` if those are set, else restored from model state,
            else the length of the majority of the first lists (see
            :class:`oml.codecs.limits.FeatureWidth`).
        max_classes: the most classes one key's model may know; feedback with a label that
            would be one more is dead-lettered (``too_many_classes``), so no key's model grows
            without bound from labels.
    """

    algorithm: str = field(default="scw", metadata={"min_len": 1})
    params: dict[str, Any] = field(default_factory=dict, metadata={"table": _PARAMS})
    max_features: int | None = field(default=1_000, metadata={"min": 1})
    n_features: int | None = field(default=None, metadata={"min": 1})
    max_classes: int = field(default=1000, metadata={"min": 1})


@dataclass(frozen=True)
class FieldNames:
    """Names of the fields of an input message (TOML table ``[messages.fields]``).

    For users whose topics already have a schema; the defaults are oml's own.
    """

    event_id: str = field(default="event_id", metadata={"min_len": 1})
    key: str = field(default="key", metadata={"min_len": 1})
    features: str = field(default="features", metadata={"min_len": 1})
    label: str = field(default="label", metadata={"min_len": 1})
    timestamp: str = field(default="timestamp", metadata={"min_len": 1})

    def __post_init__(self) -> None:
        names = [self.event_id, self.key, self.features, self.label, self.timestamp]
        if len(set(names)) != len(names):
            raise ConfigError(f"messages.fields: two fields share a name: {names}")


@dataclass(frozen=True)
class MessagesConfig:
    """How messages are encoded (TOML table ``[messages]``).

    Attributes:
        format: ``json`` or ``avro``, for the input and every output topic.
        schema_registry_url: a Confluent Schema Registry; with it, Avro messages use the
            Confluent wire format (magic byte, schema id, body).  ``mock://NAME`` gives the
            client library's in-memory mock (tests only).
        schema_registry: further schema-registry client settings as written
            (``basic.auth.user.info``, ``ssl.ca.location``...); TOML ``[messages.schema_registry]``.
        fields: the input message's field names.
        feature_names: names for list-shaped features, in order; their count is then the
            expected list length.  Without it list features are named ``"0"``, ``"1"``, ... and
            the length is ``model.n_features``, or agreed by the majority of the first lists.
        max_message_bytes: a message value longer than this is dead-lettered as ``too_large``
            without being parsed.  The default is librdkafka's ``message.max.bytes``, a little
            under Kafka's broker default (1,048,588 bytes).  None: no bound.
        max_id_length, max_key_length, max_label_length: the most characters of an event id, a
            key and a string label; longer is ``too_long``.  None: no bound.
        max_timestamp_skew_ms: how far an event time may be ahead of the processing clock
            (default one day); further is ``clock_skew``, or clamped (see ``timestamp_skew``).
            Without this bound one far-future time would move the feature cache's clock and
            expire every entry.  None: no bound.
        max_timestamp_age_ms: how far an event time may be behind the processing clock; None
            (the default): any age, so a topic can be replayed.
        timestamp_skew: ``dead_letter`` (the default) or ``clamp``: an event time outside the
            window is moved to its nearest edge, and counted.
    """

    format: Format = "json"
    schema_registry_url: str | None = None
    schema_registry: dict[str, Scalar] = field(default_factory=dict, metadata={"table": _SETTINGS})
    fields: FieldNames = field(default_factory=FieldNames)
    feature_names: tuple[str, ...] | None = None
    max_message_bytes: int | None = field(default=1_000_000, metadata={"min": 1})
    max_id_length: int | None = field(default=256, metadata={"min": 1})
    max_key_length: int | None = field(default=256, metadata={"min": 1})
    max_label_length: int | None = field(default=256, metadata={"min": 1})
    max_timestamp_skew_ms: int | None = field(default=86_400_000, metadata={"min": 0})
    max_timestamp_age_ms: int | None = field(default=None, metadata={"min": 0})
    timestamp_skew: TimestampSkew = "dead_letter"


@dataclass(frozen=True)
class ProcessingConfig:
    """The consume-process-commit loop (TOML table ``[processing]``).

    Attributes:
        guarantee: ``exactly-once`` (transactions) or ``at-least-once``.
        batch_size: at most this many messages are polled and processed together.
        commit_interval_ms: commit (or commit the transaction) at most this often.
        poll_timeout_s: how long one poll waits for messages.
        max_events: stop after this many input messages (None: run forever).
        exit_when_idle_s: stop after this long without a message (None: never).
        gc_threshold: the first threshold of Python's cyclic garbage collector while the
            service runs (Python's default is 700; 0 leaves it alone).  A batch allocates tens
            of thousands of short-lived, acyclic containers, which at 700 set off hundreds of
            collections per second, some of them of the whole heap.
    """

    guarantee: Guarantee = "exactly-once"
    batch_size: int = field(default=10_000, metadata={"min": 1})
    commit_interval_ms: int = field(default=1_000, metadata={"min": 0})
    poll_timeout_s: float = field(default=1.0, metadata={"min": 0})
    max_events: int | None = field(default=None, metadata={"min": 0})
    exit_when_idle_s: float | None = field(default=None, metadata={"min": 0})
    gc_threshold: int = field(default=50_000, metadata={"min": 0})


@dataclass(frozen=True)
class CacheConfig:
    """Features of scored events, kept until their feedback arrives (TOML table ``[cache]``).

    Attributes:
        ttl_s: an entry expires this many seconds of event time after its event.
        max_entries: the oldest entries are dropped beyond this many (per service instance).
        max_clock_lead_s: the cache's event-time clock (what the TTL is measured against) runs
            at most this far ahead of the wall clock, however far in the future an event is
            stamped; so one wrong timestamp cannot expire every entry.
    """

    ttl_s: float = field(default=3600.0, metadata={"min": 0})
    max_entries: int = field(default=1_000_000, metadata={"min": 1})
    max_clock_lead_s: float = field(default=60.0, metadata={"min": 0})

    @property
    def ttl_ms(self) -> int:
        """``ttl_s`` in milliseconds, the unit of event timestamps."""
        return round(self.ttl_s * 1000)


@dataclass(frozen=True)
class MetricsConfig:
    """Prequential metrics and the HTTP endpoint (TOML table ``[metrics]``).

    Attributes:
        interval_s: how often metrics records are written to the metrics topic.
        port: HTTP port for ``/metrics``, ``/healthz``, ``/readyz``; 0 turns it off.
        host: address the HTTP endpoint binds: ``0.0.0.0`` (default: every IPv4 interface, as a
            container's probes and scraper need), ``127.0.0.1`` for this host only, ``::`` for
            IPv6.
        max_connections: connections served at once; a further one waits up to half of
            ``request_timeout_s`` for a slot, then is answered 503 and closed.
        request_timeout_s: a client must send its whole request within this many seconds (and
            read the answer within as many), else the connection is dropped.
    """

    interval_s: float = field(default=10.0, metadata={"min": 0})
    port: int = field(default=0, metadata={"min": 0, "max": 65535})
    host: str = "0.0.0.0"  # noqa: S104  (probes and scrapes come from outside a container)
    max_connections: int = field(default=16, metadata={"min": 1, "max": 1024})
    request_timeout_s: float = field(default=5.0, metadata={"min": 0.1})


@dataclass(frozen=True)
class LogConfig:
    """Logging (TOML table ``[log]``).

    Attributes:
        level: debug, info, warning, error or critical.
        format: ``auto`` (console on a terminal, else JSON), ``json`` or ``console``.
    """

    level: LogLevel = "info"
    format: LogFormat = "auto"


@dataclass(frozen=True)
class Config:
    """Everything ``oml run`` needs; build it with :func:`load_config`.

    Topic names are resolved on construction: ``config.topics.predictions`` is never empty.
    The dict-valued settings are plain dicts: treat them as read-only.
    """

    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    messages: MessagesConfig = field(default_factory=MessagesConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "topics", self.topics.resolved(self.kafka.group_id))

    def redacted(self) -> dict[str, Any]:
        """The configuration as nested dicts, secrets replaced by ``"***"`` (for logging)."""
        return _as_dict(self)


_SECRET_MARKERS = ("password", "secret", "user.info", "token", "oauthbearer.config", "key.pem")


def _as_dict(obj: Any) -> Any:
    if is_dataclass(obj):
        return {f.name: _as_dict(getattr(obj, f.name)) for f in fields(obj)}
    if isinstance(obj, dict):
        return {
            k: "***" if any(m in str(k).lower() for m in _SECRET_MARKERS) else _as_dict(v)
            for k, v in obj.items()
        }
    if isinstance(obj, tuple):
        return list(obj)
    return obj


# --------------------------------------------------------------------------------------------
# building it

Path = tuple[str, ...]


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults < TOML file < ``OML_*`` environment < overrides.

    ``path``: the TOML file, or None to use ``env["OML_CONFIG"]`` if set, else no file.
    ``env``: usually ``os.environ``.
    ``overrides``: dotted paths to values (``{"kafka.group_id": "g"}``), as made from the
    command line by :func:`overrides_from_args`; nested dicts are accepted too.  String values
    are parsed like environment values; free-form tables (``model.params``,
    ``kafka.librdkafka``) are dicts and merge key by key with the other sources.

    Raises :class:`ConfigError` naming the source and the key.
    """
    if path is None:
        path = env.get(ENV_CONFIG_FILE) or None
    layers: list[dict[Path, Any]] = []
    if path is not None:
        layers.append(_file_layer(os.fspath(path)))
    layers.append(_env_layer(env))
    layers.append(_override_layer(overrides or {}))

    merged: dict[Path, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    try:
        return _build(Config, (), merged)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - a bug in the checks above
        raise ConfigError(str(exc)) from exc


def _build(cls: type, prefix: Path, values: Mapping[Path, Any]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = (*prefix, f.name)
        if _is_section(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], path, values)
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


# ---- the three kinds of source


def _file_layer(path: str) -> dict[Path, Any]:
    source = f"file {path}"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    out: dict[Path, Any] = {}
    _walk_mapping(data, Config, (), source, out)
    return out


def _walk_mapping(
    data: Mapping[str, Any], cls: type, prefix: Path, source: str, out: dict[Path, Any]
) -> None:
    hints = _hints(cls)
    known = {f.name: f for f in fields(cls)}
    for name, value in data.items():
        path = (*prefix, name)
        if name not in known:
            raise ConfigError(f"{source}: unknown key {_dotted(path)!r}{_suggest(name, known)}")
        tp = hints[name]
        if _is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {_dotted(path)} must be a table")
            _walk_mapping(value, tp, path, source, out)
        elif known[name].metadata.get("table"):
            out[path] = _table(value, known[name].metadata["table"], f"{source}: {_dotted(path)}")
        else:
            out[path] = _convert(value, tp, known[name], f"{source}: {_dotted(path)}", text=False)


def _env_layer(env: Mapping[str, str]) -> dict[Path, Any]:
    out: dict[Path, Any] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE:
            continue
        if name.startswith(ENV_IGNORED_PREFIX) or name in ENV_IGNORED:
            continue
        text = env[name]
        source = f"env {name}"
        if name in ENV_ALIASES:
            path = ENV_ALIASES[name]
            f, tp = _lookup(path)
            kind = f.metadata.get("table")
            if kind:  # a JSON object; entries from OML_KAFKA__LIBRDKAFKA... win over it
                out[path] = {**_table(text, kind, source), **out.get(path, {})}
                continue
            canonical = _env_name(path)
            if canonical in env and env[canonical] != text:
                raise ConfigError(f"{source}: conflicts with {canonical}; set only one")
            out[path] = _convert(text, tp, f, source, text=True)
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        cls: type = Config
        prefix: Path = ()
        while True:
            if not parts or not parts[0]:
                raise ConfigError(f"{source}: not a setting name")
            part = parts.pop(0)
            known = {f.name: f for f in fields(cls)}
            lowered = part.lower()
            if lowered not in known:
                dotted = _dotted((*prefix, lowered))
                hint = _suggest(lowered, known, fmt=lambda n, p=prefix: _dotted((*p, n)))
                raise ConfigError(f"{source}: unknown setting {dotted!r}{hint}")
            f = known[lowered]
            tp = _hints(cls)[lowered]
            path = (*prefix, lowered)
            if _is_section(tp):
                if not parts:
                    raise ConfigError(f"{source}: {_dotted(path)} is a section, name a setting")
                cls, prefix = tp, path
                continue
            kind = f.metadata.get("table")
            if kind and parts:
                entry = _env_table_key(parts, kind)
                where = f"{source}: {_dotted(path)}"
                value = _table_value(text, kind, where, text=True)
                out.setdefault(path, {})[entry] = value
            elif kind:
                out[path] = {**out.get(path, {}), **_table(text, kind, source)}
            elif parts:
                raise ConfigError(f"{source}: {_dotted(path)} has no setting {parts[0]!r}")
            else:
                out[path] = _convert(text, tp, f, source, text=True)
            break
    return out


def _env_table_key(parts: list[str], kind: str) -> str:
    if kind == _PARAMS:
        return "__".join(parts)
    # librdkafka and schema-registry names are lower-case words separated by dots
    return ".".join(p.lower().replace("_", ".") for p in parts if p)


def _override_layer(overrides: Mapping[str, Any]) -> dict[Path, Any]:
    flat: dict[Path, Any] = {}

    def flatten(prefix: Path, mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            path = (*prefix, *str(key).split("."))
            target = _try_lookup(path)
            if isinstance(value, Mapping) and (target is None or _is_section(target[1])):
                flatten(path, value)
            else:
                flat[path] = value

    flatten((), overrides)
    out: dict[Path, Any] = {}
    for path, value in flat.items():
        flag = _FLAG_FOR_PATH.get(path)
        source = f"flag {flag}" if flag else f"override {_dotted(path)}"
        found = _try_lookup(path)
        if found is None:
            # "kafka.librdkafka.sasl.mechanism": an entry of a free-form table
            for cut in range(len(path) - 1, 0, -1):
                table = _try_lookup(path[:cut])
                if table is not None and table[0].metadata.get("table"):
                    kind = table[0].metadata["table"]
                    where = f"{source}: {_dotted(path)}"
                    entry = _table_value(value, kind, where, text=isinstance(value, str))
                    out.setdefault(path[:cut], {})[".".join(path[cut:])] = entry
                    break
            else:
                raise ConfigError(f"{source}: unknown setting {_dotted(path)!r}")
            continue
        f, tp = found
        kind = f.metadata.get("table")
        if _is_section(tp):
            raise ConfigError(f"{source}: {_dotted(path)} is a section, name a setting")
        if kind:
            out[path] = {**out.get(path, {}), **_table(value, kind, source)}
        else:
            out[path] = _convert(value, tp, f, source, text=isinstance(value, str))
    return out


# ---- values


def _table(value: Any, kind: str, where: str) -> dict[str, Any]:
    """A whole free-form table: a mapping, or text holding a JSON object or TOML inline table."""
    if isinstance(value, str):
        parsed = parse_value(value)
        if not isinstance(parsed, dict):
            raise ConfigError(f"{where}: expected a JSON object or TOML table, got {value!r}")
        value = parsed
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
    return {str(k): _table_value(v, kind, f"{where}.{k}", text=False) for k, v in value.items()}


def _table_value(value: Any, kind: str, where: str, text: bool) -> Any:
    if kind == _PARAMS:
        return parse_value(value) if text else value
    if isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number")
        return value
    raise ConfigError(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def _convert(value: Any, tp: Any, f: Any, where: str, text: bool) -> Any:
    """Check (``text=False``) or parse (``text=True``) one value against its annotation."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (text and value.strip() in ("", "none", "null")):
            return None
        if len(args) == 1:
            return _convert(value, args[0], f, where, text)
        raise ConfigError(f"{where}: unsupported union type")  # pragma: no cover
    if value is None:
        raise ConfigError(f"{where}: a value is required")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if text:
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return _check_range(value, f, where)
    if tp is float:
        if text:
            try:
                value = float(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return _check_range(float(value), f, where)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if len(value) < f.metadata.get("min_len", 0):
            raise ConfigError(f"{where}: must not be empty")
        return value
    if origin is tuple:
        if text:
            stripped = value.strip()
            if stripped.startswith("["):
                value = parse_value(stripped)
            else:
                value = [v.strip() for v in stripped.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: names must be distinct")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover


def _check_range(value: int | float, f: Any, where: str) -> Any:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and value < low:
        raise ConfigError(f"{where}: must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be at most {high}, got {value}")
    return value


def parse_value(text: Any) -> Any:
    """A value written on a command line or in an environment variable.

    JSON or a TOML value if it parses as one, else the text itself:

    >>> parse_value("0.5"), parse_value("2"), parse_value('["a","b"]'), parse_value("hinge")
    (0.5, 2, ['a', 'b'], 'hinge')
    >>> parse_value("true"), parse_value("{C = 1}")
    (True, {'C': 1})
    """
    if not isinstance(text, str):
        return text

    def reject(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=reject)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


# ---- the schema


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and is_dataclass(tp)


def _try_lookup(path: Path) -> tuple[Any, Any] | None:
    cls: Any = Config
    for i, part in enumerate(path):
        if not _is_section(cls):
            return None
        known = {f.name: f for f in fields(cls)}
        if part not in known:
            return None
        tp = _hints(cls)[part]
        if i == len(path) - 1:
            return known[part], tp
        cls = tp
    return None


def _lookup(path: Path) -> tuple[Any, Any]:
    found = _try_lookup(path)
    assert found is not None, path
    return found


def _dotted(path: Path) -> str:
    return ".".join(path)


def _env_name(path: Path) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def _suggest(name: str, known: Mapping[str, Any], fmt: Any = None) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    if not close:
        return f" (known: {', '.join(known)})"
    return f" (did you mean {(fmt(close[0]) if fmt else close[0])!r}?)"


def _leaf_paths(cls: type = Config, prefix: Path = ()) -> list[Path]:
    out: list[Path] = []
    hints = _hints(cls)
    for f in fields(cls):
        if _is_section(hints[f.name]):
            out.extend(_leaf_paths(hints[f.name], (*prefix, f.name)))
        else:
            out.append((*prefix, f.name))
    return out


def env_names() -> list[str]:
    """Every environment variable a setting can be read from (free-form tables take suffixes).

    >>> "OML_PROCESSING__BATCH_SIZE" in env_names()
    True
    """
    return [_env_name(p) for p in _leaf_paths()] + sorted(ENV_ALIASES) + [ENV_CONFIG_FILE]


def defaults() -> Config:
    """The configuration with nothing set."""
    return Config()


# --------------------------------------------------------------------------------------------
# the command line

# (flag, argparse dest, config path or None, help); the lead's CLI adds these to `oml run`.
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
_FLAG_FOR_PATH: dict[Path, str] = {path: flag for flag, _, path, _, _ in _FLAGS}
_FLAG_FOR_PATH[("model", "params")] = "--param"
_FLAG_FOR_PATH[("kafka", "librdkafka")] = "--kafka"


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
            out[_dotted(path)] = value
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


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """``load_config(args.config, env or os.environ, overrides_from_args(args))``."""
    return load_config(
        getattr(args, "config", None), os.environ if env is None else env, overrides_from_args(args)
    )


def _split_pair(entry: str, flag: str) -> tuple[str, str]:
    name, sep, value = entry.partition("=")
    if not sep or not name.strip():
        raise ConfigError(f"flag {flag}: expected NAME=VALUE, got {entry!r}")
    return name.strip(), value


def flags() -> Sequence[tuple[str, str]]:
    """(flag, dotted config path) for every flag that sets one setting (for the docs)."""
    return [(flag, _dotted(path)) for flag, _, path, _, _ in _FLAGS]
