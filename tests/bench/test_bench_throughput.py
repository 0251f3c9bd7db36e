"""``oml bench throughput`` end to end on a real broker, at a size that runs in seconds: the
rates are the bench's business, this checks what it measures and writes."""

from __future__ import annotations

import json

import pytest

from oml.bench import throughput

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_latency_is_measured_to_committed_visibility(bootstrap_servers, tmp_path):
    result = throughput.run(
        events=2_000, keys=20, repeat=1, latency_events=2_000, latency_rate=2_000.0,
        commit_interval_ms=500, bootstrap_servers=bootstrap_servers, out=tmp_path,
    )
    assert result.passthrough_events_per_s > 0 and result.service_events_per_s > 0
    assert result.commit_interval_ms == 500
    # a committed reader sees a prediction only after its transaction commits: later than the
    # batch that made it, by up to one commit interval (plus the commit itself)
    assert result.visible_latency_ms_p50 > result.processing_latency_ms_p50
    assert result.visible_latency_ms_max >= result.processing_latency_ms_max
    written = json.loads((tmp_path / "throughput.json").read_text())
    assert written["visible_latency_ms_p99"] == result.visible_latency_ms_p99


def test_restore_is_timed_against_a_bare_read_and_memory_is_counted_per_key(bootstrap_servers):
    from oml.bench import restore

    result = restore.measure(bootstrap_servers, keys=500, algorithm="pa")
    assert result.keys == 500 and result.records == 1_500
    assert result.bare_read_s > 0 and result.restore_s > 0
    assert result.ratio == pytest.approx(result.bare_read_s / result.restore_s, rel=0.05)
    # pa at 4 features: w (4 doubles) and b (1): what the store holds per key is more than the
    # model's own arrays (its key, its row's bookkeeping), and far less than a kilobyte more
    assert result.array_bytes_per_key == 40
    assert 40 < result.bytes_per_key < 40 + 1_024


def test_throughput_takes_restore_from_the_command_line():
    import argparse

    p = argparse.ArgumentParser()
    throughput.add_arguments(p)
    assert p.parse_args(["--restore", "1000"]).restore == 1000
    assert p.parse_args([]).restore == 0
