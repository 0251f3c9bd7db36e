"""A whole evaluation with stand-in learners: the report, its table, JSON, plot and targets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from oml.bench import contenders, report
from oml.bench.evaluate import BenchConfig, evaluate
from oml.plugins import Registry


def no_sklearn(monkeypatch: pytest.MonkeyPatch) -> None:
    """scikit-learn's partial_fit costs ~0.5 ms an event; most tests do not need it."""
    monkeypatch.setattr(contenders, "sklearn_baseline", lambda ds: None)


def test_iris_report_json_and_plot(data_dir: Path, tmp_path: Path, registry: Registry) -> None:
    algorithms = [("majority", {}), ("majority", {"smoothing": 1.0})]
    config = BenchConfig(dataset="iris", data_dir=data_dir, passes=2, algorithms=algorithms)
    rep = evaluate(config, registry=registry, warn=pytest.fail)
    labels = [r["label"] for r in rep["results"]]
    assert labels == ["majority", "majority(smoothing=1.0)", "StandardScaler | majority",
                      "StandardScaler | majority(smoothing=1.0)", "river OneVsRest(PAClassifier)",
                      "sklearn SGDClassifier(pa1)",
                      "river StandardScaler | OneVsRest(LogisticRegression)",
                      "class prior"]  # fmt: skip
    first = rep["results"][0]
    assert rep["results"][1]["params"] == {"smoothing": 1.0}
    assert first["resolved_params"] == {"smoothing": 0.0}
    assert [p["pass"] for p in first["passes"]] == [1, 2]
    assert set(first["passes"][0]) >= {"accuracy", "precision", "recall", "f1", "log_loss",
                                        "ece", "reliability", "us_per_event",
                                        "us_per_event_p50"}  # fmt: skip
    assert "recovery" not in first["passes"][0] and "windowed" not in first  # not a stream
    # River's one-vs-rest PA on raw Iris, as measured in docs/algorithms.md
    river = rep["results"][4]["passes"]
    assert [round(p["accuracy"], 4) for p in river] == [0.6133, 0.6667]
    assert rep["published"][0]["accuracy_by_pass"] == [{"pass": None, "accuracy": 1.0}]
    assert rep["protocol"]["order_head"] == np.random.default_rng(0).permutation(150)[:8].tolist()
    assert rep["dataset"]["sha256"].startswith("9cc1c345")
    assert rep["checks"][0] == {"target": "scw accuracy >= 0.96 by pass 3", "status": "n/a",
                                "measured": "passes=2"}  # fmt: skip
    assert {c["status"] for c in rep["checks"]} == {"n/a"}  # issue 11's too

    table = report.format_table(rep)
    assert "majority(smoothing=1.0)" in table and "KS-OML talk (published, not run)" in table
    assert "log loss" in table and "ECE" in table and "µs/event" in table
    assert "recovery" not in table

    path = report.write_json(rep, tmp_path / "out" / "iris.json")
    assert json.loads(path.read_text())["results"][0]["label"] == "majority"
    png = report.plot_curves(rep, tmp_path / "out" / "iris.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_curves_at_1_0_and_overlapping_curves_stay_visible(data_dir: Path, registry) -> None:
    """Two learners with identical curves, and a published line at exactly 1.0: the axis
    goes above 1.0, every curve has its own marker, oml's learners sit on the baselines."""
    algorithms = [("majority", {}), ("majority", {"smoothing": 0.0})]
    rep = evaluate(BenchConfig(dataset="iris", data_dir=data_dir, passes=1,
                               algorithms=algorithms), registry=registry, warn=pytest.fail)
    ax = report.curves_figure(rep).axes[0]
    low, top = ax.get_ylim()
    assert top >= 1.0 + 0.005 and top == pytest.approx(1.0 + report.Y_PAD * (1.0 - low))
    assert max(ax.get_yticks()) <= 1.0
    lines = {line.get_label(): line for line in ax.get_lines()}
    curves = [lines[r["label"]] for r in rep["results"]]
    assert curves[0].get_ydata().tolist() == curves[1].get_ydata().tolist()  # they coincide
    assert len({c.get_marker() for c in curves}) == len(curves)
    assert curves[0].get_markevery() != curves[1].get_markevery()  # markers staggered
    kinds = [r["kind"] for r in rep["results"]]
    learners = [c.get_zorder() for c, k in zip(curves, kinds) if k == "learner"]
    baselines = [c.get_zorder() for c, k in zip(curves, kinds) if k != "learner"]
    assert min(learners) > max(baselines)
    assert all((c.get_alpha() or 1.0) < 1.0 for c, k in zip(curves, kinds) if k != "learner")


def test_banknote_targets(data_dir, registry, monkeypatch) -> None:
    no_sklearn(monkeypatch)
    # the stand-in "pa" is River's PAClassifier, so it must match the River baseline exactly;
    # the stand-in "scw" is a majority vote, so it must miss the SCW target
    rep = evaluate(BenchConfig(dataset="banknote", data_dir=data_dir), registry=registry)
    checks = {c["target"]: c for c in rep["checks"]}
    pa = checks["pa predicts exactly as River PAClassifier"]
    assert pa["status"] == "pass"
    assert "0.9606 / 0.9781 / 0.9825" in pa["measured"]
    assert checks["scw accuracy >= 0.985 in passes 2 and 3"]["status"] == "fail"
    text = report.format_table(rep)
    assert "[pass] pa predicts exactly as River PAClassifier" in text
    assert "0.9497" in text and "0.9507" in text

    delayed = evaluate(BenchConfig(dataset="banknote", data_dir=data_dir, delay=3, passes=1,
                                   algorithms=[("pa", {})]), registry=registry)  # fmt: skip
    assert {c["status"] for c in delayed["checks"]} == {"n/a"}


def test_default_algorithms_missing_are_skipped_with_a_warning(data_dir, monkeypatch) -> None:
    no_sklearn(monkeypatch)
    warnings: list[str] = []
    rep = evaluate(BenchConfig(dataset="iris", data_dir=data_dir, passes=1),
                   registry=Registry(), warn=warnings.append)  # fmt: skip
    assert [r["kind"] for r in rep["results"]] == ["baseline"] * 3  # PA, logistic, prior
    assert len(warnings) == 2 and "'pa'" in warnings[0]
    with pytest.raises(LookupError, match="unknown algorithm 'pa'"):
        evaluate(BenchConfig(dataset="iris", data_dir=data_dir, algorithms=[("pa", {})]),
                 registry=Registry())  # fmt: skip


def test_params_reach_the_learner_and_bad_ones_fail_early(data_dir, registry) -> None:
    config = BenchConfig(dataset="banknote", data_dir=data_dir, passes=1, baselines=False,
                         algorithms=[("pa", {})], params=[("pa", "C", 0.01)])  # fmt: skip
    rep = evaluate(config, registry=registry)
    assert rep["results"][0]["label"] == "pa(C=0.01)"
    assert rep["results"][0]["params"] == {"C": 0.01}
    config.params = [("pa", "nope", 1)]
    with pytest.raises(TypeError, match="no parameter nope"):
        evaluate(config, registry=registry)
    config.params = [("scw", "C", 1)]
    with pytest.raises(ValueError, match="not being run"):
        evaluate(config, registry=registry)


def test_regression_csv(tmp_path: Path, registry: Registry) -> None:
    path = tmp_path / "lin.csv"
    lines = ["a,b,y"] + [f"{i % 7},{i % 3},{2 * (i % 7) - (i % 3) + 0.5}" for i in range(60)]
    path.write_text("\n".join(lines) + "\n")
    rep = evaluate(BenchConfig(csv=path, target="y", passes=2), registry=registry)
    assert rep["dataset"]["task"] == "regression" and rep["published"] == []
    assert [r["label"] for r in rep["results"]] == [
        "pa-regressor", "StandardScaler | pa-regressor", "river PARegressor",
        "sklearn SGDRegressor(pa1)", "river StandardScaler | LinearRegression",
    ]  # fmt: skip
    assert set(rep["results"][0]["passes"][0]) >= {"mae", "rmse"}
    assert "MAE" in report.format_table(rep)
    report.plot_curves(rep, tmp_path / "lin.png")


def test_pa_may_differ_from_river_only_during_the_cold_start() -> None:
    from oml.bench.targets import check_targets

    def passes(acc: float) -> list[dict[str, float]]:
        return [{"pass": p, "accuracy": acc} for p in (1, 2, 3)]

    report = {
        "dataset": {"name": "banknote"},
        "protocol": {"passes": 3, "seed": 0, "label_delay": 0, "cold_start_events": 2},
        "results": [{"label": "pa", "passes": passes(0.9)},
                    {"label": "river PAClassifier", "passes": passes(0.9)}],
    }  # fmt: skip
    river = [0, 0, 1, 1, 0]

    def status(ours: list) -> dict[str, str]:
        checks = check_targets(report, None, {"pa": ours, "river PAClassifier": river})
        return next(c for c in checks if c["target"].startswith("pa "))

    ok = status([None, 1, 1, 1, 0])
    assert ok["status"] == "pass"
    assert (
        "identical on all 3 events after the first 2 (cold start, 2 differ there)" in ok["measured"]
    )
    late = status([0, 0, 1, 0, 0])
    assert (
        late["status"] == "fail"
        and "1 of 5 predictions differ, the first at event 3" in late["measured"]
    )


def test_same_learner_twice_and_wrong_task(data_dir, registry, monkeypatch) -> None:
    from river import linear_model

    no_sklearn(monkeypatch)
    config = BenchConfig(dataset="iris", data_dir=data_dir, passes=1, baselines=False,
                         scaled=False, algorithms=[("majority", {}), ("majority", {})])  # fmt: skip
    rep = evaluate(config, registry=registry)
    assert [r["label"] for r in rep["results"]] == ["majority", "majority #2"]

    registry.classes["river-reg"] = linear_model.PARegressor
    config.algorithms = [("river-reg", {})]
    with pytest.raises(ValueError, match="'river-reg' does regression; iris is a classification"):
        evaluate(config, registry=registry)
