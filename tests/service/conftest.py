"""The service tests' fixture: a fresh input topic and a config factory for services on it."""

from __future__ import annotations

import pytest

from oml.config import load_config

# Not a module to collect doctests from (see tests/conftest.py).
collect_ignore = ["conftest.py"]

TEST_CLIENT = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}


@pytest.fixture
def fresh_setup(bootstrap_servers, kafka_config, new_topic):
    """Factory of :func:`setup`-style config factories, each on a fresh input topic (for tests
    that need several, such as one per hypothesis example)."""

    def make():
        topic = new_topic(partitions=4)
        group = f"g-{topic}"

        def config(**overrides):
            values = {
                "kafka.bootstrap_servers": bootstrap_servers,
                "kafka.group_id": group,
                "kafka.instance_id": "one",
                "kafka.librdkafka": {**{k: v for k, v in kafka_config.items()
                                        if k != "bootstrap.servers"}, **TEST_CLIENT},
                "topics.input": topic,
                "model.algorithm": "scw",
                "processing.exit_when_idle_s": 2.0,
                "processing.commit_interval_ms": 200,
                "metrics.interval_s": 0.5,
            }
            values.update(overrides)
            return load_config(None, {}, values)

        return config

    return make


@pytest.fixture
def setup(fresh_setup):
    """A fresh input topic with 4 partitions and a config factory for services on it."""
    return fresh_setup()
