"""Scale-free learning: multiplying one feature by 10^k, for k up to 12, never stops a learner
from learning.  Users send raw amounts, counts and epoch-millisecond timestamps (about 1.7e12);
before, one such feature stopped SCW for good (0 updates in 300), because the step alpha was
compared with an absolute 1e-12 while alpha shrinks as 1/‖x‖."""

from __future__ import annotations

import numpy as np
import pytest
from algo_helpers import stream

from oml.plugins import load_registry

SCALES = [0, 3, 6, 9, 12]
EVENTS = 300

CLASSIFIERS = [
    ("pa", {"mode": 0}), ("pa", {"mode": 1}), ("pa", {"mode": 2}),
    ("scw", {"mode": 1, "covariance": "full"}), ("scw", {"mode": 1, "covariance": "diagonal"}),
    ("scw", {"mode": 2, "covariance": "full"}), ("scw", {"mode": 2, "covariance": "diagonal"}),
]
REGRESSORS = [("pa-regressor", {"mode": m}) for m in (0, 1, 2)]


def regression_stream(n: int = EVENTS) -> tuple[list[dict], list[float]]:
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (n, 3))
    y = 2.0 * X[:, 0] - X[:, 1] + 0.5 * X[:, 2] + rng.normal(0, 0.05, n)
    return [dict(zip("abc", r.tolist(), strict=True)) for r in X], y.tolist()


def updates(name: str, params: dict, xs: list[dict], ys: list, feature: str, k: int) -> int:
    """How many of the events the learner updated on, with ``feature`` times 10^k."""
    model = load_registry().create(name, params)
    for x, y in zip(xs, ys, strict=True):
        model.learn_one({**x, feature: x[feature] * 10.0**k}, y)
    return int(model.n_updates)


@pytest.mark.parametrize("data", ["banknote", "iris"])
@pytest.mark.parametrize(("name", "params"), CLASSIFIERS, ids=lambda v: str(v))
def test_a_feature_at_any_scale_never_stops_a_classifier_learning(name, params, data):
    xs, ys = stream(data)
    xs, ys = xs[:EVENTS], ys[:EVENTS]
    for feature in xs[0]:
        counts = {k: updates(name, params, xs, ys, feature, k) for k in SCALES}
        # a feature that dwarfs the others makes the problem harder, never learning-free
        assert all(counts[k] >= max(1, counts[0] // 4) for k in SCALES), (feature, counts)


@pytest.mark.parametrize(("name", "params"), REGRESSORS, ids=lambda v: str(v))
def test_a_feature_at_any_scale_never_stops_a_regressor_learning(name, params):
    xs, ys = regression_stream()
    for feature in xs[0]:
        counts = {k: updates(name, params, xs, ys, feature, k) for k in SCALES}
        assert all(counts[k] >= max(1, counts[0] // 4) for k in SCALES), (feature, counts)
