"""The example plugin is what plugin authors copy: its probabilities must stay numbers at any
feature scale, including where w·x overflows a float (|x| near 1e160 and beyond)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

oml_perceptron = pytest.importorskip("oml_perceptron")

signs = st.sampled_from([-1.0, 1.0])
events = st.lists(
    st.tuples(st.tuples(signs, signs, signs), st.sampled_from(["a", "b", "c"])),
    min_size=1,
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(stream=events, exponent=st.integers(0, 300), probe=st.tuples(signs, signs, signs))
def test_probabilities_are_finite_and_agree_with_the_prediction(stream, exponent, probe):
    scale = 10.0**exponent
    model = oml_perceptron.Perceptron()
    for signs_, y in stream:
        model.learn_one({f: s * scale for f, s in zip("xyz", signs_, strict=True)}, y)
    x = {f: s * scale for f, s in zip("xyz", probe, strict=True)}
    proba = model.predict_proba_one(x)
    assert all(math.isfinite(p) and 0.0 <= p <= 1.0 for p in proba.values()), proba
    assert math.isclose(sum(proba.values()), 1.0)
    assert proba[model.predict_one(x)] == max(proba.values())


def test_a_feature_at_1e160_gives_the_same_decision_as_at_1():
    def trained(scale: float):
        model = oml_perceptron.Perceptron()
        for x, y in [({"a": 1.0, "b": 1.0}, "up"), ({"a": -1.0, "b": 1.0}, "down")] * 3:
            model.learn_one({f: v * scale for f, v in x.items()}, y)
        return model

    small, huge = trained(1.0), trained(1e160)
    for x in ({"a": 1.0, "b": -1.0}, {"a": -1.0, "b": -1.0}):
        assert huge.predict_one({f: v * 1e160 for f, v in x.items()}) == small.predict_one(x)
        proba = huge.predict_proba_one({f: v * 1e160 for f, v in x.items()})
        assert sorted(proba.values()) == [0.0, 1.0]
