"""The configuration: defaults < TOML file < OML_* environment < flags, strictly checked."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from oml.config import (
    Config,
    ConfigError,
    add_run_arguments,
    config_from_args,
    env_names,
    flags,
    load_config,
    overrides_from_args,
    parse_value,
)


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "oml.toml"
    path.write_text(text)
    return str(path)


def parse_flags(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_run_arguments(parser)
    return parser.parse_args(list(argv))


# ---------------------------------------------------------------------------- defaults


def test_defaults() -> None:
    config = load_config(None, {}, {})
    assert config == Config()
    assert config.kafka.bootstrap_servers is None  # start the embedded broker
    assert config.kafka.group_id == "oml"
    assert config.model.algorithm == "scw"
    assert config.messages.format == "json"
    assert config.processing.guarantee == "exactly-once"
    assert config.processing.batch_size == 10_000
    assert config.processing.commit_interval_ms is None  # the guarantee's default:
    assert config.processing.commit_every_ms == 100  # 100 ms under exactly-once (Kafka Streams')
    assert config.processing.max_events is None
    assert config.cache.ttl_s == 3600 and config.cache.ttl_ms == 3_600_000
    assert config.cache.max_entries == 1_000_000
    assert config.metrics.port == 0
    assert (config.log.level, config.log.format) == ("info", "auto")


def test_topic_names_derive_from_input_and_group() -> None:
    config = load_config(None, {}, {"topics.input": "clicks", "kafka.group_id": "fraud"})
    t = config.topics
    assert (t.input, t.predictions, t.metrics, t.dead_letter) == (
        "clicks",
        "clicks.predictions",
        "clicks.metrics",
        "clicks.dlq",
    )
    assert (t.models, t.cache) == ("fraud.clicks.models", "fraud.clicks.cache")


def test_an_explicit_topic_name_is_kept() -> None:
    config = load_config(None, {"OML_TOPICS__PREDICTIONS": "scores"}, {})
    assert config.topics.predictions == "scores"
    assert config.topics.metrics == "events.metrics"


# ---------------------------------------------------------------------------- precedence


def test_precedence_file_env_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [kafka]
        group_id = "from-file"
        bootstrap_servers = "file:9092"
        [processing]
        batch_size = 111
        commit_interval_ms = 5
        max_events = 7
        """,
    )
    env = {"OML_PROCESSING__BATCH_SIZE": "222", "OML_PROCESSING__MAX_EVENTS": "8"}
    args = parse_flags("--max-events", "9")
    config = load_config(path, env, overrides_from_args(args))
    assert config.kafka.group_id == "from-file"  # file only
    assert config.processing.commit_interval_ms == 5  # file only
    assert config.processing.batch_size == 222  # env beats file
    assert config.processing.max_events == 9  # flag beats env and file
    assert config.kafka.bootstrap_servers == "file:9092"


def test_oml_bootstrap_servers_sets_kafka_bootstrap_servers(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafka]\nbootstrap_servers = "file:9092"\n')
    config = load_config(path, {"OML_BOOTSTRAP_SERVERS": "broker-1:9092,broker-2:9092"}, {})
    assert config.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    flagged = load_config(
        path,
        {"OML_BOOTSTRAP_SERVERS": "env:9092"},
        overrides_from_args(parse_flags("--bootstrap-servers", "flag:9092")),
    )
    assert flagged.kafka.bootstrap_servers == "flag:9092"


def test_alias_and_canonical_name_must_agree() -> None:
    env = {"OML_BOOTSTRAP_SERVERS": "a:1", "OML_KAFKA__BOOTSTRAP_SERVERS": "b:2"}
    with pytest.raises(ConfigError, match="OML_BOOTSTRAP_SERVERS: conflicts with"):
        load_config(None, env, {})
    same = {"OML_BOOTSTRAP_SERVERS": "a:1", "OML_KAFKA__BOOTSTRAP_SERVERS": "a:1"}
    assert load_config(None, same, {}).kafka.bootstrap_servers == "a:1"


def test_empty_bootstrap_servers_means_embedded_broker() -> None:
    assert load_config(None, {"OML_BOOTSTRAP_SERVERS": ""}, {}).kafka.bootstrap_servers is None


def test_oml_config_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nalgorithm = "pa"\n')
    assert load_config(None, {"OML_CONFIG": path}, {}).model.algorithm == "pa"
    other = write(tmp_path, '[model]\nalgorithm = "pa-regressor"\n')
    assert load_config(other, {"OML_CONFIG": "/nonexistent"}, {}).model.algorithm == (
        "pa-regressor"
    )


def test_config_from_args(tmp_path: Path) -> None:
    path = write(tmp_path, '[topics]\ninput = "a"\n')
    args = parse_flags("--config", path, "--algorithm", "pa")
    config = config_from_args(args, {"OML_KAFKA__GROUP_ID": "g"})
    assert (config.topics.input, config.model.algorithm, config.kafka.group_id) == ("a", "pa", "g")


# ---------------------------------------------------------------------------- strictness


def test_unknown_key_in_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = write(tmp_path, "[processing]\nbatch_sise = 10\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    message = str(info.value)
    assert path in message and "processing.batch_sise" in message and "batch_size" in message


def test_unknown_section_in_file(tmp_path: Path) -> None:
    path = write(tmp_path, '[kafak]\ngroup_id = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key 'kafak' \(did you mean 'kafka'\?\)"):
        load_config(path, {}, {})


def test_a_section_must_be_a_table(tmp_path: Path) -> None:
    path = write(tmp_path, 'kafka = "localhost:9092"\n')
    with pytest.raises(ConfigError, match="kafka must be a table"):
        load_config(path, {}, {})


def test_unknown_env_variable_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {"OML_PROCESSING__BATCHSIZE": "5"}, {})
    message = str(info.value)
    assert "env OML_PROCESSING__BATCHSIZE" in message
    assert "processing.batch_size" in message


def test_env_naming_a_section_is_an_error() -> None:
    with pytest.raises(ConfigError, match="is a section"):
        load_config(None, {"OML_KAFKA": "x"}, {})


def test_other_environment_is_ignored() -> None:
    env = {"PATH": "/bin", "OMLETTE": "1", "OML_TEST_SLOW": "1", "HOME": "/root"}
    assert load_config(None, env, {}) == Config()


@pytest.mark.parametrize(
    ("toml", "needle"),
    [
        ("[processing]\nbatch_size = '10'", "processing.batch_size: expected an integer"),
        ("[processing]\nbatch_size = 1.5", "processing.batch_size: expected an integer"),
        ("[processing]\nbatch_size = true", "processing.batch_size: expected an integer"),
        ("[processing]\nbatch_size = 0", "processing.batch_size: must be at least 1"),
        ("[metrics]\nport = 70000", "metrics.port: must be at most 65535"),
        ("[processing]\nguarantee = 'maybe'", "expected one of exactly-once, at-least-once"),
        ("[messages]\nformat = 'xml'", "messages.format: expected one of json, avro"),
        ("[kafka]\ngroup_id = 3", "kafka.group_id: expected a string"),
        ("[topics]\ninput = ''", "topics.input: must not be empty"),
        ("[cache]\nttl_s = -1", "cache.ttl_s: must be at least 0"),
        ("[messages]\nfeature_names = 'a'", "messages.feature_names: expected a list of strings"),
        ("[messages]\nfeature_names = ['a', 'a']", "names must be distinct"),
        ("[kafka.librdkafka]\n'sasl.mechanism' = ['x']", "expected a string, number or boolean"),
        ("[model]\nparams = 3", "model.params: expected a table"),
    ],
)
def test_wrong_type_in_file_names_file_and_key(tmp_path: Path, toml: str, needle: str) -> None:
    path = write(tmp_path, toml)
    with pytest.raises(ConfigError) as info:
        load_config(path, {}, {})
    assert str(info.value).startswith(f"file {path}: ")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"OML_PROCESSING__BATCH_SIZE": "many"}, "env OML_PROCESSING__BATCH_SIZE: expected an"),
        ({"OML_PROCESSING__POLL_TIMEOUT_S": "soon"}, "expected a number"),
        ({"OML_PROCESSING__POLL_TIMEOUT_S": "nan"}, "expected a finite number"),
        ({"OML_LOG__LEVEL": "loud"}, "env OML_LOG__LEVEL: expected one of debug"),
        ({"OML_METRICS__PORT": "-1"}, "must be at least 0"),
        ({"OML_MODEL__PARAMS": "[1]"}, "expected a JSON object or TOML table"),
    ],
)
def test_wrong_type_in_env_names_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError, match=r"^env OML_") as info:
        load_config(None, env, {})
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--max-events", "lots"], "flag --max-events: expected an integer, got 'lots'"),
        (["--exit-when-idle", "later"], "flag --exit-when-idle: expected a number"),
        (["--metrics-port", "http"], "flag --metrics-port: expected an integer"),
        (["--log-level", "verbose"], "flag --log-level: expected one of"),
        (["--input", ""], "flag --input: must not be empty"),
        (["--set", "processing.batch_size=zero"], "processing.batch_size: expected an integer"),
        (["--set", "processing.nope=1"], "unknown setting 'processing.nope'"),
    ],
)
def test_wrong_value_in_flag_names_flag(argv: list[str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, {}, overrides_from_args(parse_flags(*argv)))
    assert needle in str(info.value)


def test_flag_without_equals_sign() -> None:
    with pytest.raises(ConfigError, match="flag --param: expected NAME=VALUE"):
        overrides_from_args(parse_flags("--param", "C"))


def test_invalid_or_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[kafka\n"), {}, {})
    with pytest.raises(ConfigError, match="no such file"):
        load_config(str(tmp_path / "missing.toml"), {}, {})


def test_field_names_must_differ() -> None:
    with pytest.raises(ConfigError, match="share a name"):
        load_config(None, {"OML_MESSAGES__FIELDS__LABEL": "key"}, {})


def test_unknown_override_key() -> None:
    with pytest.raises(ConfigError, match=r"unknown setting 'kafka\.nope'"):
        load_config(None, {}, {"kafka.nope": 1})


# ---------------------------------------------------------------------------- free-form tables


def test_librdkafka_passthrough_from_every_source(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        [kafka.librdkafka]
        "security.protocol" = "SASL_SSL"
        "sasl.mechanism" = "PLAIN"
        "sasl.username" = "file-user"
        "queue.buffering.max.ms" = 5
        "enable.ssl.certificate.verification" = false
        """,
    )
    env = {
        "OML_KAFKA__LIBRDKAFKA__SASL_USERNAME": "env-user",
        "OML_KAFKA__LIBRDKAFKA__SASL_PASSWORD": "env-secret",
        "OML_KAFKA__LIBRDKAFKA__SSL__CA__LOCATION": "/etc/ca.pem",
    }
    args = parse_flags("--kafka", "sasl.mechanism=SCRAM-SHA-512", "--kafka", "client.rack=eu1")
    settings = load_config(path, env, overrides_from_args(args)).kafka.librdkafka
    assert settings == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "env-user",
        "sasl.password": "env-secret",
        "ssl.ca.location": "/etc/ca.pem",
        "queue.buffering.max.ms": 5,
        "enable.ssl.certificate.verification": False,
        "client.rack": "eu1",
    }


def test_librdkafka_as_json_env_and_the_test_suite_alias() -> None:
    env = {
        "OML_KAFKA_CONFIG": '{"security.protocol": "SSL", "acks": "all"}',
        "OML_KAFKA__LIBRDKAFKA__ACKS": "1",
    }
    assert load_config(None, env, {}).kafka.librdkafka == {"security.protocol": "SSL", "acks": "1"}
    whole = {"OML_KAFKA__LIBRDKAFKA": '{"linger.ms": 20}'}
    assert load_config(None, whole, {}).kafka.librdkafka == {"linger.ms": 20}


def test_set_flag_reaches_a_table_entry() -> None:
    args = parse_flags(
        "--set", "kafka.librdkafka.sasl.mechanism=PLAIN", "--set", "model.params.C=2"
    )
    config = load_config(None, {}, overrides_from_args(args))
    assert config.kafka.librdkafka == {"sasl.mechanism": "PLAIN"}
    assert config.model.params == {"C": 2}


def test_model_params_merge_and_parse(tmp_path: Path) -> None:
    path = write(tmp_path, '[model]\nalgorithm = "pa"\n[model.params]\nC = 1.0\nmode = 1\n')
    env = {"OML_MODEL__PARAMS__mode": "2", "OML_MODEL__PARAMS__eta": "0.1"}
    args = parse_flags("--param", "C=0.5", "--param", 'classes=["a","b"]', "--param", "loss=hinge")
    config = load_config(path, env, overrides_from_args(args))
    assert config.model.params == {
        "C": 0.5,
        "mode": 2,
        "eta": 0.1,
        "classes": ["a", "b"],
        "loss": "hinge",
    }


def test_schema_registry_settings_and_feature_names() -> None:
    env = {
        "OML_MESSAGES__SCHEMA_REGISTRY_URL": "http://registry:8081",
        "OML_MESSAGES__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": "user:secret",
        "OML_MESSAGES__FEATURE_NAMES": "age, income,score",
        "OML_MESSAGES__FIELDS__EVENT_ID": "id",
        "OML_MESSAGES__FORMAT": "AVRO",
    }
    m = load_config(None, env, {}).messages
    assert m.schema_registry_url == "http://registry:8081"
    assert m.schema_registry == {"basic.auth.user.info": "user:secret"}
    assert m.feature_names == ("age", "income", "score")
    assert m.fields.event_id == "id" and m.fields.key == "key"
    assert m.format == "avro"
    assert load_config(
        None, {"OML_MESSAGES__FEATURE_NAMES": '["a", "b"]'}, {}
    ).messages.feature_names == ("a", "b")


def test_redacted_hides_secrets() -> None:
    config = load_config(
        None,
        {
            "OML_KAFKA__LIBRDKAFKA__SASL_PASSWORD": "hunter2",
            "OML_KAFKA__LIBRDKAFKA__SASL_USERNAME": "me",
            "OML_MESSAGES__SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO": "me:hunter2",
        },
        {},
    )
    text = repr(config.redacted())
    assert "hunter2" not in text
    assert config.redacted()["kafka"]["librdkafka"]["sasl.username"] == "me"


# ---------------------------------------------------------------------------- flags


def test_every_flag_the_cli_needs_exists() -> None:
    args = parse_flags(
        "--config", "c.toml",
        "--bootstrap-servers", "b:9092",
        "--input", "in",
        "--predictions", "out",
        "--algorithm", "pa",
        "--param", "C=0.5",
        "--format", "avro",
        "--guarantee", "at-least-once",
        "--group-id", "g",
        "--max-events", "10",
        "--exit-when-idle", "2.5",
        "--kafka", "acks=all",
        "--metrics-port", "9100",
        "--schema-registry-url", "http://r:8081",
        "--log-level", "DEBUG",
        "--log-format", "json",
    )  # fmt: skip
    assert args.config == "c.toml"
    config = load_config(None, {}, overrides_from_args(args))
    assert config.kafka.bootstrap_servers == "b:9092"
    assert (config.topics.input, config.topics.predictions) == ("in", "out")
    assert (config.model.algorithm, config.model.params) == ("pa", {"C": 0.5})
    assert config.messages.format == "avro"
    assert config.messages.schema_registry_url == "http://r:8081"
    assert config.processing.guarantee == "at-least-once"
    assert config.kafka.group_id == "g"
    assert config.topics.models == "g.in.models"
    assert config.processing.max_events == 10
    assert config.processing.exit_when_idle_s == 2.5
    assert config.kafka.librdkafka == {"acks": "all"}
    assert config.metrics.port == 9100
    assert (config.log.level, config.log.format) == ("debug", "json")


def test_flags_not_given_override_nothing() -> None:
    assert overrides_from_args(parse_flags()) == {}


def test_argparse_rejects_bad_choices() -> None:
    with pytest.raises(SystemExit):
        parse_flags("--format", "xml")


def test_flag_table_and_env_names_cover_the_settings() -> None:
    assert ("--max-events", "processing.max_events") in flags()
    names = env_names()
    for expected in (
        "OML_KAFKA__BOOTSTRAP_SERVERS",
        "OML_BOOTSTRAP_SERVERS",
        "OML_TOPICS__DEAD_LETTER",
        "OML_MESSAGES__FIELDS__TIMESTAMP",
        "OML_CACHE__TTL_S",
        "OML_CONFIG",
    ):
        assert expected in names
    # every listed name is understood (whatever it then says about the value)
    for name in names:
        try:
            load_config(None, {name: "1"}, {})
        except ConfigError as exc:
            assert "unknown setting" not in str(exc), name


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0.5", 0.5),
        ("2", 2),
        ("-3", -3),
        ("true", True),
        ('["a","b"]', ["a", "b"]),
        ("['a', 'b']", ["a", "b"]),
        ('"quoted"', "quoted"),
        ("plain text", "plain text"),
        ("{x = 1}", {"x": 1}),
        ("NaN", "NaN"),
        ("", ""),
    ],
)
def test_parse_value(text: str, value: object) -> None:
    assert parse_value(text) == value


def test_the_guide_s_example_file_loads(tmp_path: Path) -> None:
    """docs/config-guide.md shows a complete file: it must stay a valid one."""
    guide = Path(__file__).resolve().parents[1] / "docs" / "config-guide.md"
    text = guide.read_text()
    example = text.split("```toml\n", 1)[1].split("```", 1)[0]
    config = load_config(write(tmp_path, example), {}, {})
    assert config.kafka.bootstrap_servers == "broker-1:9092,broker-2:9092"
    assert config.kafka.librdkafka["sasl.mechanism"] == "SCRAM-SHA-512"
    assert config.topics.models == "oml.events.models"
    assert config.model.params == {"C": 0.5}
    defaults = Config()
    assert config.processing == defaults.processing
    assert (config.cache, config.metrics, config.log) == (
        defaults.cache,
        defaults.metrics,
        defaults.log,
    )
    assert config.messages.fields == defaults.messages.fields
