"""Crash equivalence: an instance SIGKILLed again and again over a live stream ends with every
key's model exactly as an uninterrupted run's, and every event predicted: exactly once among the
committed predictions under exactly-once, at least once under at-least-once.

The kills come at random moments (seeded): while the process starts, joins the group, restores
its partitions, or processes.  On the embedded broker, aborted transactions' records are told
from committed ones by the markers in the log (the ``read_committed`` fixture)."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
import time

import pytest
from service_helpers import assert_same_models, changelog_models, offline, predictions_by_event

from oml.bench.throughput import synthetic_events
from oml.replay import produce_events
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MESSAGES = 50_000
KILLS = 10


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_ten_kills_over_a_live_stream_change_no_model_and_lose_no_prediction(
        setup, bootstrap_servers, read_committed, guarantee):
    rng = random.Random(f"kills-{guarantee}")
    events = list(synthetic_events(MESSAGES, n_keys=200, d=4, delay=100, seed=3))
    settings = {"processing.guarantee": guarantee, "processing.batch_size": 500,
                "processing.commit_interval_ms": 100, "model.algorithm": "pa"}
    config = setup(**settings)
    # the stream arrives over about a minute, so that the kills fall in the middle of it
    producer = threading.Thread(
        target=produce_events, args=(config, bootstrap_servers, iter(events)),
        kwargs={"rate": MESSAGES / 60}, daemon=True,
    )
    producer.start()
    cmd = [
        sys.executable, "-m", "oml.cli", "run", "--bootstrap-servers", bootstrap_servers,
        "--input", config.topics.input, "--group-id", config.kafka.group_id,
        "--log-format", "json",
        *[arg for k, v in {**settings, "kafka.instance_id": "one"}.items()
          for arg in ("--set", f"{k}={v}")],
        *[arg for k, v in config.kafka.librdkafka.items() for arg in ("--kafka", f"{k}={v}")],
    ]
    kills_mid_stream = 0
    for kill in range(KILLS):
        victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assigned = _watch_for(victim, b"partitions_assigned")
        try:
            if kill % 2:  # while it starts, joins the group or restores
                time.sleep(rng.uniform(0.2, 5.0))
            else:  # while it processes
                assert assigned.wait(60), "the instance was never assigned partitions"
                time.sleep(rng.uniform(0.0, 3.0))
            assert victim.poll() is None, f"the instance exited by itself (rc {victim.poll()})"
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
        finally:
            if victim.poll() is None:
                victim.kill()
        kills_mid_stream += producer.is_alive()
    producer.join(120)
    assert not producer.is_alive()
    assert kills_mid_stream >= KILLS // 2, "most kills must fall while the stream is live"

    # the killed instances did the work: the last run only finishes it
    before = predictions_by_event(read_committed, config.topics.predictions)
    assert len(before) >= MESSAGES // 8, f"only {len(before)} events predicted before the end"

    Service(config).run()  # the last run, to the end of the stream

    assert_same_models(changelog_models(read_committed, config.topics.models),
                       offline(events, "pa"))
    predictions = predictions_by_event(read_committed, config.topics.predictions)
    assert len(predictions) == MESSAGES // 2  # none lost
    if guarantee == "exactly-once":
        assert set(predictions.values()) == {1}


def _watch_for(process: subprocess.Popen, needle: bytes) -> threading.Event:
    """An event set once ``needle`` appears in the process's log (its stderr), which is read
    to the end so that the process never blocks on a full pipe."""
    seen = threading.Event()

    def read() -> None:
        for line in process.stderr:
            if needle in line:
                seen.set()
        process.stderr.close()

    threading.Thread(target=read, daemon=True).start()
    return seen
