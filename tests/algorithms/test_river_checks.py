"""River's own estimator battery (river.checks), run on the built-in learners.

The checks that snapshot a model with ``pickle`` are left out here, as oml's own tests do not
use pickle (state travels as a ModelState); ``tests/learners/test_battery.py`` runs River's whole
battery on every registered learner.
"""

from __future__ import annotations

import pytest
from oml_algorithms.pa import PAClassifier, PARegressor
from oml_algorithms.scw import SCWClassifier
from river import checks

USES_PICKLE = {
    "check_pickling",
    "check_pickling_supports_roundtrip",
    "check_clone_is_independent",
    "check_no_state_aliasing_with_input",
}

CASES = [
    (model, check)
    for model in (
        PAClassifier(),
        SCWClassifier(),
        SCWClassifier(covariance="diagonal"),
        PARegressor(),
    )
    for check in checks.yield_checks(model)
    if check.__name__ not in USES_PICKLE
]


@pytest.mark.parametrize(
    ("model", "check"), CASES, ids=[f"{type(m).__name__}-{c.__name__}" for m, c in CASES]
)
def test_river_check(model, check):
    check(model.clone())
