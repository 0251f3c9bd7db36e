"""``oml bench speed``: the synthetic streams, the timed paths and the targets."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from river import base as river_base

from oml.bank import LoopBank
from oml.bench import speed
from oml.learner import Learner
from oml.plugins import Registry


def test_streams_are_seeded_and_as_described() -> None:
    a = speed.make_stream("teacher", 5, 400, seed=1)
    b = speed.make_stream("teacher", 5, 400, seed=1)
    assert a.y == b.y and np.array_equal(a.X, b.X)
    assert a.xs[3] == {f"f{j}": a.X[3, j] for j in range(5)}
    assert 0.3 < np.mean(a.y) < 0.7
    r = speed.make_stream("random", 5, 400, seed=1)
    assert np.array_equal(r.X, a.X) and r.y != a.y
    with pytest.raises(ValueError, match="unknown data kind"):
        speed.make_stream("nope", 5, 10)


class Plain(river_base.Classifier, Learner):
    """A majority vote with the default bank."""

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}

    def predict_proba_one(self, x: dict) -> dict[Any, float]:
        total = sum(self.counts.values())
        return {c: k / total for c, k in self.counts.items()}

    def learn_one(self, x: dict, y: Any) -> None:
        self.counts[y] = self.counts.get(y, 0) + 1


class Counts(Plain):
    """The same with a bank of its own (a LoopBank subclass, standing in for a fast bank)."""

    @classmethod
    def make_bank(cls, template: Any) -> LoopBank:
        return OwnBank(template)


class OwnBank(LoopBank):
    stages: list[int] = []

    def learn(self, rows, X, y, xs=None):
        OwnBank.stages.append(len(rows))
        return super().learn(rows, X, y, xs)


def test_a_learner_with_its_own_bank_gets_bank_rows() -> None:
    registry = Registry(classes={"counts": Counts, "plain": Plain})
    assert speed.has_own_bank(Counts) and not speed.has_own_bank(Plain)
    timed = speed.timed_learners([("counts", {}), ("plain", {})], registry, stages=(1, 8))
    assert [t.label for t in timed] == [
        "counts", "counts [bank, stage 1]", "counts [bank, stage 8]", "plain", "river PAClassifier"
    ]  # fmt: skip
    OwnBank.stages.clear()
    rows = speed.measure(timed, [3], events=20, repeats=1, kinds=["teacher"])
    assert OwnBank.stages == [1] * 20 + [8] * 2  # 20 events: 20 stages of 1, 2 stages of 8
    assert {r["path"] for r in rows} == {"dict", "bank1", "bank8"}
    assert all(r["us_per_event"] > 0 for r in rows)


def test_targets_and_table() -> None:
    def row(learner: str, d: int, us: float, kind: str = "learner", path: str = "dict") -> dict:
        low = us / 2 if learner == "scw" else us
        return {"learner": learner, "kind": kind, "path": path, "d": d, "data": "teacher",
                "us_per_event": us, "us_per_event_min": low}  # fmt: skip

    base = "river PAClassifier"
    rows = [row(base, 4, 6.0, "baseline"), row(base, 100, 40.0, "baseline"),
            row("pa", 4, 6.0), row("pa", 100, 10.0), row("scw", 4, 7.0), row("scw", 100, 8.0),
            row("pa [bank, stage 1]", 4, 60.0, path="bank1")]  # fmt: skip
    checks = speed.check_speed_targets(rows, base)
    status = {(c["learner"], c["d"]): c["status"] for c in checks}
    assert status == {("pa", 4): "pass", ("pa", 100): "fail", ("scw", 4): "fail",
                      ("scw", 100): "pass"}  # fmt: skip
    by_min = speed.check_speed_targets(rows, base, "min")
    assert {(c["learner"], c["d"]): c["status"] for c in by_min}[("scw", 4)] == "pass"
    report = {"results": rows, "baseline": base, "checks": checks,
              "protocol": {"events": 10, "repeats": 1}}  # fmt: skip
    table = speed.format_speed(report)
    assert "pa" in table and "10.0 (4.0x)" in table and "[fail] pa d=100 teacher: 4.0x" in table
