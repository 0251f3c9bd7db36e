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
