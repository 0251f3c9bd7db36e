"""The service end to end, on a real broker (the embedded one, or OML_BOOTSTRAP_SERVERS)."""

from __future__ import annotations

import gc
import json
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
from confluent_kafka import Producer
from service_helpers import assert_same_models, changelog_models, offline, predictions_by_event

from oml.kafka.deadletter import HEADER_ERROR, HEADER_REASON, HEADER_SOURCE_TOPIC
from oml.kafka.restore import RestoreError
from oml.replay import dataset_events, produce_events
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]

@pytest.fixture(scope="module")
def banknote():
    from oml.bench.datasets import load

    ds = load("banknote", download=False)
    return ds.X, ds.y


def test_banknote_end_to_end_matches_offline_training(setup, bootstrap_servers, banknote,
                                                      read_all):
    config = setup()
    events = list(dataset_events(*banknote, n_keys=8, delay=10))
    produce_events(config, bootstrap_servers, iter(events))

    service = Service(config)
    thresholds, process = [], service.process
    service.process = lambda batch: (thresholds.append(gc.get_threshold()[0]), process(batch))
    before = gc.get_threshold()
    summary = service.run()

    # the collector runs less often while the service does, and as before afterwards
    assert set(thresholds) == {config.processing.gc_threshold} and gc.get_threshold() == before
    assert summary.events == len(events)
    assert summary.learned == summary.predictions == len(banknote[1])
    assert_same_models(changelog_models(read_all, config.topics.models), offline(events))
    predictions = predictions_by_event(read_all, config.topics.predictions)
    assert len(predictions) == len(banknote[1]) and set(predictions.values()) == {1}
    # every event was resolved within a commit interval or later: nothing left in the cache
    cache = {r.key: r.value for r in read_all(config.topics.cache)}
    assert all(v is None for v in cache.values())
    overall = [json.loads(r.value) for r in read_all(config.topics.metrics) if r.key is None]
    assert len({r.partition for r in read_all(config.topics.metrics) if r.key is None}) == 1
    # 8 keys, each learning from an eighth of the data
    assert overall[-1]["n"] == len(banknote[1]) and overall[-1]["accuracy"] > 0.9
    assert read_all(config.topics.dead_letter) == []


def test_stop_and_restart_mid_stream_loses_and_repeats_nothing(setup, bootstrap_servers,
                                                               banknote, read_all):
    events = list(dataset_events(*banknote, n_keys=8, delay=25))
    config = setup(**{"processing.batch_size": 200})
    produce_events(config, bootstrap_servers, iter(events))

    first = Service(setup(**{"processing.batch_size": 200, "processing.max_events": 900})).run()
    assert 900 <= first.events < len(events)
    second = Service(config).run()

    assert first.events + second.events == len(events)
    assert second.restored_models > 0 and second.restored_cache > 0
    assert_same_models(changelog_models(read_all, config.topics.models), offline(events))
    predictions = predictions_by_event(read_all, config.topics.predictions)
    assert len(predictions) == len(banknote[1]) and set(predictions.values()) == {1}


def test_kill_9_mid_stream_then_restart(setup, bootstrap_servers, banknote, read_all,
                                        read_committed):
    events = list(dataset_events(*banknote, n_keys=8, delay=25, passes=2))
    config = setup(**{"processing.batch_size": 50, "processing.commit_interval_ms": 100})
    produce_events(config, bootstrap_servers, iter(events))
    librdkafka = dict(config.kafka.librdkafka)
    cmd = [
        sys.executable, "-m", "oml.cli", "run", "--bootstrap-servers", bootstrap_servers,
        "--input", config.topics.input, "--group-id", config.kafka.group_id,
        "--set", "kafka.instance_id=one", "--set", "processing.batch_size=50",
        "--set", "processing.commit_interval_ms=100", "--log-format", "json",
        *[arg for k, v in librdkafka.items() for arg in ("--kafka", f"{k}={v}")],
    ]
    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert victim.poll() is None, victim.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the service made no progress"
            time.sleep(0.2)
            try:
                done = predictions_by_event(read_all, config.topics.predictions)
            except AssertionError:  # the service has not created its topics yet
                continue
            if sum(done.values()) >= 300:
                break
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
    finally:
        if victim.poll() is None:
            victim.kill()
    committed = predictions_by_event(read_all, config.topics.predictions)
    assert 0 < sum(committed.values()) < len(events) // 2, "killed mid-stream"

    Service(config).run()

    # no update lost or applied twice, and each prediction committed exactly once
    assert_same_models(changelog_models(read_committed, config.topics.models), offline(events))
    predictions = predictions_by_event(read_committed, config.topics.predictions)
    assert len(predictions) == 2 * len(banknote[1])  # none lost
    assert set(predictions.values()) == {1}


def test_two_instances_in_one_group_share_the_partitions(setup, bootstrap_servers, banknote,
                                                        read_all):
    events = list(dataset_events(*banknote, n_keys=16, delay=10, passes=2))
    configs = [setup(**{"kafka.instance_id": name, "processing.exit_when_idle_s": None})
               for name in ("one", "two")]
    services = [Service(c) for c in configs]
    summaries = {}
    threads = [threading.Thread(target=lambda s=s: summaries.update({id(s): s.run()}))
               for s in services]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    # (through the metrics: a consumer is not to be called from another thread while it polls)
    while not all(s.metrics.is_ready
                  and s.metrics.registry.get_sample_value("oml_partitions_assigned")
                  for s in services):
        assert time.monotonic() < deadline, "the two instances never both got partitions"
        time.sleep(0.2)
    produce_events(configs[0], bootstrap_servers, iter(events))

    def handled(service):  # input events handled so far, through the metrics
        value = service.metrics.registry.get_sample_value
        return sum(value("oml_events_total", {"kind": kind}) or 0
                   for kind in ("unlabeled", "feedback", "dead_letter"))

    deadline = time.monotonic() + 120
    while sum(map(handled, services)) < len(events):
        assert time.monotonic() < deadline, "the two instances never handled every event"
        time.sleep(0.2)
    for s in services:
        s.stop()  # each commits what it did and leaves the group
    for t in threads:
        t.join(60)

    counts = [summaries[id(s)].events for s in services]
    assert all(n > 0 for n in counts) and sum(counts) == len(events)
    assert_same_models(changelog_models(read_all, configs[0].topics.models), offline(events))
    predictions = predictions_by_event(read_all, configs[0].topics.predictions)
    assert len(predictions) == 2 * len(banknote[1]) and set(predictions.values()) == {1}


def test_bad_input_goes_to_the_dead_letter_topic_and_good_events_flow(
    setup, bootstrap_servers, kafka_config, read_all
):
    config = setup(**{"model.algorithm": "pa"})
    good = [
        b'{"event_id": "g1", "key": "k", "features": [1.0, 2.0]}',
        b'{"event_id": "g1", "key": "k", "label": true}',
    ]
    bad = {
        "malformed": b'{"event_id": "b1", "key": "k", "feat',
        "schema_mismatch": b'{"event_id": "b2", "key": "k", "features": "1,2"}',
        "missing_field": b'{"key": "k", "features": [1.0, 2.0]}',
        "not_finite": b'{"event_id": "b4", "key": "k", "features": [NaN, 1.0]}',
        "wrong_feature_count": b'{"event_id": "b5", "key": "k", "features": [1.0, 2.0, 3.0]}',
        "bad_label": b'{"event_id": "g2", "key": "k", "label": [1, 2]}',
        "unknown_event": b'{"event_id": "nobody", "key": "k", "label": true}',
    }
    after = [
        b'{"event_id": "g3", "key": "k", "features": [2.0, 1.0]}',
        b'{"event_id": "g3", "key": "k", "label": false}',
    ]
    producer = Producer(kafka_config)
    for value in [*good, *bad.values(), *after]:
        producer.produce(config.topics.input, value=value, key=b"k")
    producer.flush(10)

    summary = Service(config).run()

    letters = read_all(config.topics.dead_letter)
    by_reason = {}
    for r in letters:
        by_reason[r.header(HEADER_REASON)] = r
    assert set(by_reason) == set(bad)
    for reason, raw in bad.items():
        letter = by_reason[reason]
        assert letter.value == raw  # the original bytes, untouched
        assert letter.header(HEADER_SOURCE_TOPIC) == config.topics.input
        assert letter.header(HEADER_ERROR)
    assert summary.learned == 2 and summary.dead_letters == Counter(dict.fromkeys(bad, 1))
    predicted = predictions_by_event(read_all, config.topics.predictions)
    assert set(predicted) == {"g1", "g3"}


def test_restore_skips_uncommitted_records_and_fails_loudly_on_bad_state(setup, kafka_config):
    config = setup()
    Service(config).run()  # creates the topics; there is no input
    producer = Producer({**kafka_config, "transactional.id": f"t-{config.topics.input}"})
    producer.init_transactions()
    producer.begin_transaction()
    producer.produce(config.topics.models, key=b"ghost", value=b"junk", partition=0,
                     headers=[("oml.offset", b"999")])
    producer.abort_transaction()
    # a record of input the group never committed (offset 999 >= committed 0) is left out
    assert Service(config).run().restored_models == 0

    producer = Producer(kafka_config)
    producer.produce(config.topics.models, key=b"broken", value=b"not a model", partition=1)
    producer.flush(10)
    del producer  # the traceback kept below would keep it (and its reconnects) alive
    with pytest.raises(RestoreError, match=r"broken.*partition 1 at offset \d+"):
        Service(config).run()
