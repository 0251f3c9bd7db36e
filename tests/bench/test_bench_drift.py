"""The drift streams: generated the same way every time, with the concept changing where they
say; and a bench run over a stream: stream order, drift points, recovery, windowed plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from oml.bench import cli, report, streams
from oml.bench.datasets import Dataset, DatasetError, from_rows, load
from oml.bench.evaluate import BenchConfig, evaluate
from oml.plugins import Registry


@pytest.mark.parametrize("name", sorted(streams.STREAMS))
def test_streams_are_deterministic_and_pinned(name: str) -> None:
    a, b = load(name), load(name)
    assert a.X == b.X and a.y == b.y
    assert a.sha256 == streams.digest(a) == streams.SHA256[name]  # the stream River 0.26.1 gives
    assert a.stream and a.n == streams.STREAMS[name].n and a.classes == [0, 1]
    other = load(name, seed=1)
    assert other.sha256 != a.sha256 and other.n == a.n


def test_sea_drifts_halfway() -> None:
    ds = load("sea-drift")
    s = np.array([x["x0"] + x["x1"] for x in ds.X])
    y = np.array(ds.y)
    half = ds.drifts[0]
    assert half == ds.n // 2

    def agreement(threshold: float, part: slice) -> float:
        return float(np.mean((s[part] > threshold) == y[part]))

    # 10% label noise: each half agrees with its own threshold on about 90% of events
    assert agreement(8.0, slice(0, half)) == pytest.approx(0.9, abs=0.015)
    assert agreement(9.5, slice(half, None)) == pytest.approx(0.9, abs=0.015)
    assert agreement(9.5, slice(0, half)) < 0.85 and agreement(8.0, slice(half, None)) < 0.85
    assert streams.drift_points(ds, 3) == [10_000, 20_000, 30_000, 40_000, 50_000]


def test_agrawal_changes_its_labelling_function_halfway() -> None:
    ds, shift = load("agrawal-drift"), load("agrawal-shift")
    half = ds.drifts[0]

    def disposable(x: dict[str, float]) -> float:  # Agrawal's function 6: 0 if above 1
        return 2 * (x["salary"] + x["commission"]) / 3 - x["loan"] / 5 - 20000

    assert all(int(disposable(x) <= 1) == y for x, y in zip(ds.X[:half], ds.y[:half]))
    assert any(int(disposable(x) <= 1) != y for x, y in zip(ds.X[half:], ds.y[half:]))
    assert 0.45 < sum(ds.y[half:]) / half < 0.55  # function 8: still balanced
    assert sum(shift.y[half:]) / half < 0.05  # function 7: 98% class 0
    assert ds.X[:half] == shift.X[:half]


def test_raw_scales() -> None:
    agrawal = load("agrawal-drift")
    assert max(x["hvalue"] for x in agrawal.X) > 5e5 and max(x["salary"] for x in agrawal.X) > 1e5
    epoch = load("epoch-ms")
    times = [x["event_time_ms"] for x in epoch.X]
    assert times[0] == 1.7e12 and times[1] - times[0] == 1000.0
    assert epoch.drifts == () and not epoch.restart_is_drift
    assert streams.drift_points(epoch, 3) == []
    hyper = load("hyperplane-drift")
    assert hyper.drifts == () and streams.drift_points(hyper, 3) == [20_000, 40_000]


def test_unknown_name_lists_the_streams() -> None:
    names = "sea-drift, hyperplane-drift, agrawal-drift, agrawal-shift, epoch-ms"
    with pytest.raises(DatasetError, match=names):
        load("nope", download=False)


def _toy_stream() -> Dataset:
    """600 events: label 0 for the first 300, then 1 (a drift at 300), one feature."""
    rows = [[str(i % 7), "0" if i < 300 else "1"] for i in range(600)]
    ds = from_rows("toy-drift", ["a", "y"], rows, target="y")
    return Dataset(**{**ds.__dict__, "stream": True, "drifts": (300,), "restart_is_drift": True})


def test_a_run_over_a_stream(registry: Registry, tmp_path: Path) -> None:
    """The majority vote on a stream whose label flips: it keeps predicting 0 well after the
    drift, so its windowed accuracy collapses and the recovery time says how long for."""
    ds = _toy_stream()
    config = BenchConfig(dataset=None, passes=2, algorithms=[("majority", {})], baselines=False,
                         scaled=False)  # fmt: skip
    rep = evaluate(config, registry=registry, ds=ds)
    assert rep["protocol"]["order_head"] == list(range(8))  # stream order, not shuffled
    assert rep["protocol"]["drift_points"] == [301, 601, 901]
    row = rep["results"][0]
    first, second = row["passes"]
    # pass 1: majority flips to 1 once 1s outnumber 0s, i.e. after 300 more events: never
    # back within the 300 events before the restart drift
    # (the level before: 299 of 300, the very first prediction is None)
    assert first["recovery"] == [
        {"event": 301, "level_before": round(299 / 300, 4), "events_to_recover": None}
    ]
    assert [r["event"] for r in second["recovery"]] == [601, 901]
    assert row["windowed"]["window"] == 500 and row["windowed"]["events"][0] == 500
    table = report.format_table(rep)
    assert "recovery" in table and "never" in table and "drift points (events): 301" in table
    png = report.plot_windowed(rep, tmp_path / "toy-windowed.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert report.plot_reliability(rep, tmp_path / "toy-rel.png").read_bytes()[:4] == b"\x89PNG"


def test_stream_end_to_end(registry: Registry, monkeypatch, tmp_path: Path, capsys) -> None:
    """``oml bench --dataset epoch-ms``: the stream, the baselines, every file."""
    import oml.plugins

    monkeypatch.setattr(oml.plugins, "default_registry", lambda: registry)
    parser = argparse.ArgumentParser(prog="oml")
    cli.add_parser(parser.add_subparsers())
    code = cli.run(parser.parse_args(["bench", "--dataset", "epoch-ms", "--passes", "1",
                                      "--algorithm", "majority", "--out", str(tmp_path),
                                      "--quiet"]))  # fmt: skip
    assert code == 0  # off-default passes: every target n/a
    rep = json.loads((tmp_path / "epoch-ms.json").read_text())
    labels = [r["label"] for r in rep["results"]]
    assert labels == ["majority", "StandardScaler | majority", "river PAClassifier",
                      "river StandardScaler | LogisticRegression", "class prior"]  # fmt: skip
    assert rep["dataset"]["sha256"] == streams.SHA256["epoch-ms"]
    assert rep["protocol"]["drift_points"] == []
    for name in ("epoch-ms.png", "epoch-ms-reliability.png", "epoch-ms-windowed.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    prior = next(r for r in rep["results"] if r["label"] == "class prior")["passes"][0]
    assert 0.6 < prior["log_loss"] < 0.7 and prior["ece"] < 0.05  # balanced classes
