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
external cluster with the same two.  ``OML_CONFIG`` names the TOML file when no path is given.
Variables starting with ``OML_TEST_`` are left alone (they belong to test suites).  See
``docs/config-guide.md`` for the full list.

The package, one job per module (import every name from ``oml.config``):

- :mod:`~oml.config.settings`: the dataclasses, one per TOML table, with their defaults;
- :mod:`~oml.config.values`: the typed structure, and one value checked against it;
- :mod:`~oml.config.loading`: the sources, and how they merge;
- :mod:`~oml.config.flags`: the command line of ``oml run``.

>>> config = load_config(None, {"OML_KAFKA__GROUP_ID": "fraud"}, {"topics.input": "clicks"})
>>> config.kafka.group_id, config.topics.predictions, config.topics.models
('fraud', 'clicks.predictions', 'fraud.clicks.models')
>>> load_config(None, {"OML_KAFKA__GROUPID": "x"}, {})
Traceback (most recent call last):
...
oml.config.settings.ConfigError: env OML_KAFKA__GROUPID: unknown setting 'kafka.groupid' (did you mean 'kafka.group_id'?)
"""  # noqa: E501

from __future__ import annotations

from oml.config.flags import add_run_arguments, flags, overrides_from_args
from oml.config.loading import (
    ENV_ALIASES,
    ENV_CONFIG_FILE,
    ENV_IGNORED,
    ENV_IGNORED_PREFIX,
    ENV_PREFIX,
    config_from_args,
    env_names,
    load_config,
)
from oml.config.settings import (
    CacheConfig,
    Config,
    ConfigError,
    FieldNames,
    Format,
    Guarantee,
    KafkaConfig,
    LogConfig,
    LogFormat,
    LogLevel,
    MessagesConfig,
    MetricsConfig,
    ModelConfig,
    ProcessingConfig,
    Scalar,
    TimestampSkew,
    TopicsConfig,
)
from oml.config.values import parse_value

__all__ = [
    "ENV_ALIASES",
    "ENV_CONFIG_FILE",
    "ENV_IGNORED",
    "ENV_IGNORED_PREFIX",
    "ENV_PREFIX",
    "CacheConfig",
    "Config",
    "ConfigError",
    "FieldNames",
    "Format",
    "Guarantee",
    "KafkaConfig",
    "LogConfig",
    "LogFormat",
    "LogLevel",
    "MessagesConfig",
    "MetricsConfig",
    "ModelConfig",
    "ProcessingConfig",
    "Scalar",
    "TimestampSkew",
    "TopicsConfig",
    "add_run_arguments",
    "config_from_args",
    "env_names",
    "flags",
    "load_config",
    "overrides_from_args",
    "parse_value",
]
