"""The configuration object: one frozen dataclass per TOML table, and :class:`Config` holding them.

Each field's default is the setting's default; its ``metadata`` carries the checks the loader
(:mod:`oml.config.loading`) applies to every source: ``min``, ``max``, ``min_len``, and ``table``
for a free-form table (see :data:`SETTINGS` and :data:`PARAMS`).

>>> Config().topics.dead_letter
'events.dlq'
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal

Scalar = str | int | float | bool
"""A librdkafka or schema-registry client setting value."""

Format = Literal["json", "avro"]
Guarantee = Literal["exactly-once", "at-least-once"]
LogLevel = Literal["debug", "info", "warning", "error", "critical"]
LogFormat = Literal["auto", "json", "console"]
TimestampSkew = Literal["dead_letter", "clamp"]

# How a free-form table's entries are read (field metadata "table"):
#   "settings": client settings (librdkafka, schema registry): dotted names, scalar values; from
#               the environment, OML_..._SASL_MECHANISM means "sasl.mechanism".
#   "params":   algorithm parameters: names kept as written, any TOML value.
SETTINGS = "settings"
PARAMS = "params"


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
    librdkafka: dict[str, Scalar] = field(default_factory=dict, metadata={"table": SETTINGS})


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
    params: dict[str, Any] = field(default_factory=dict, metadata={"table": PARAMS})
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
    schema_registry: dict[str, Scalar] = field(default_factory=dict, metadata={"table": SETTINGS})
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
        commit_interval_ms: commit (or commit the transaction) at most this often; None (the
            default) is 100 ms under exactly-once, as in Kafka Streams, and 1,000 ms under
            at-least-once.  Under exactly-once a prediction is visible to ``read_committed``
            readers only once its transaction commits, so this bounds its latency: at 100 ms,
            p99 241 ms against 1,769 ms at 1,000, for 3% of throughput (``oml bench
            throughput``).  See :attr:`commit_every_ms`.
        poll_timeout_s: how long one poll waits for messages.
        max_events: stop after this many input messages (None: run forever).
        exit_when_idle_s: stop after this long without a message (None: never).
        gc_threshold: the first threshold of Python's cyclic garbage collector while the
            service runs (Python's default is 700; 0 leaves it alone).  A batch allocates tens
            of thousands of short-lived, acyclic containers (decoded events, feature dicts,
            encoded outputs), which at 700 set off hundreds of collections per second, some of
            them of the whole heap: about a tenth of the run.  This is the service's one
            setting of the collector; nothing else pauses it.
    """

    guarantee: Guarantee = "exactly-once"
    batch_size: int = field(default=10_000, metadata={"min": 1})
    commit_interval_ms: int | None = field(default=None, metadata={"min": 0})
    poll_timeout_s: float = field(default=1.0, metadata={"min": 0})
    max_events: int | None = field(default=None, metadata={"min": 0})
    exit_when_idle_s: float | None = field(default=None, metadata={"min": 0})
    gc_threshold: int = field(default=50_000, metadata={"min": 0})

    @property
    def commit_every_ms(self) -> int:
        """The commit interval in effect: ``commit_interval_ms``, or the guarantee's default.

        >>> ProcessingConfig().commit_every_ms, ProcessingConfig("at-least-once").commit_every_ms
        (100, 1000)
        """
        if self.commit_interval_ms is not None:
            return self.commit_interval_ms
        return 100 if self.guarantee == "exactly-once" else 1_000


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
