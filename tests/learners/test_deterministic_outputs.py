"""A key's prediction depends only on that key's history.

Not on which other keys share its bank, on the classes those keys have seen, on the order the
rows were added in, or on how the events were cut into stages.  Checked for every registered
classifier (the built-in fast banks and the plugin's LoopBank alike), through the bank contract
the service uses, and through the prediction encoder.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from river import base as river_base

from oml.bank import BankPrediction, bank_for
from oml.codecs.outputs import PredictionCodec
from oml.plugins import load_registry

REGISTRY = load_registry()
CLASSIFIERS = [
    name for name in REGISTRY.names() if not isinstance(REGISTRY.create(name), river_base.Regressor)
]
FEATURES = [f"f{j}" for j in range(6)]
LABELS = [False, True, "x", "y", "z", 3]


def test_every_classifier_is_checked(example_plugin):
    assert {"pa", "scw", example_plugin} <= set(CLASSIFIERS)


def run(bank, events, stage_size: int, order: list[str]) -> dict[str, list]:
    """Predict then learn each event, a stage at a time (a stage names each key at most once,
    as the service's stages do); return each key's predictions in its own event order."""
    bank.columns(FEATURES)  # the same columns in the same order in every bank compared
    rows = {key: bank.add() for key in order}
    out: dict[str, list] = {key: [] for key in order}
    i = 0
    while i < len(events):
        stage: list = []
        while i < len(events) and len(stage) < stage_size:
            if any(events[i][0] == e[0] for e in stage):
                break
            stage.append(events[i])
            i += 1
        r = np.array([rows[k] for k, _, _ in stage])
        X = np.array([[x.get(f, 0.0) for f in FEATURES] for _, x, _ in stage])
        xs = [x for _, x, _ in stage]
        p = bank.predict(r, X, xs)
        probas = p.probas()
        for j, (key, _, _) in enumerate(stage):
            out[key].append((p.labels[j], None if probas is None else probas[j]))
        errors = bank.learn(r, X, [y for _, _, y in stage], xs)
        assert errors == [None] * len(stage)
    return out


def key_events(rng: random.Random, key: str, classes: list, n: int) -> list:
    events = []
    for _ in range(n):
        x = {f: rng.uniform(-3, 3) for f in rng.sample(FEATURES, rng.randint(1, 4))}
        events.append((key, x, rng.choice(classes)))
    return events


class_sets = st.lists(st.sampled_from(LABELS), min_size=1, max_size=4, unique=True)


@pytest.mark.parametrize("name", CLASSIFIERS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    target_classes=class_sets,
    others=st.lists(class_sets, min_size=1, max_size=6),
    n_target=st.integers(0, 12),
    stage_size=st.integers(1, 20),
    seed=st.integers(0, 2**32 - 1),
)
def test_a_key_predicts_the_same_alone_and_among_others(
    name, target_classes, others, n_target, stage_size, seed
):
    rng = random.Random(seed)
    template = REGISTRY.create(name)
    mine = key_events(rng, "target", target_classes, n_target)
    alone = run(bank_for(template), mine, 1, ["target"])["target"]

    # the same events of the target, interleaved with other keys that know other classes
    streams = [mine] + [
        key_events(rng, f"k{i}", c, rng.randint(0, 12)) for i, c in enumerate(others)
    ]
    mixed = []
    while any(streams):
        s = rng.choice([s for s in streams if s])
        mixed.append(s.pop(0))
    order = ["target"] + [f"k{i}" for i in range(len(others))]
    rng.shuffle(order)
    among = run(bank_for(template), mixed, stage_size, order)["target"]
    assert among == alone


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_an_untrained_model_predicts_nothing_and_an_empty_distribution(name):
    template = REGISTRY.create(name)
    bank = bank_for(template)
    bank.columns(["a"])
    trained, fresh = bank.add(), bank.add()
    bank.learn(np.array([trained]), np.array([[1.0]]), [True], [{"a": 1.0}])
    p = bank.predict(np.array([fresh, trained]), np.array([[1.0], [1.0]]), [{"a": 1.0}] * 2)
    assert p.labels == [None, True]
    assert p.probas() == [{}, {True: 1.0}]


@pytest.mark.parametrize("name", ["pa", "scw"])
def test_declared_classes_fix_the_shape_from_the_first_event(name):
    """With ``classes`` declared, an untrained model gives the uniform distribution over them."""
    template = REGISTRY.create(name, {"classes": ["ham", "spam"]})
    bank = bank_for(template)
    bank.columns(["a"])
    row = np.array([bank.add()])
    first = bank.predict(row, np.array([[1.0]]), [{"a": 1.0}])
    assert first.probas() == [{"ham": 0.5, "spam": 0.5}]
    bank.learn(row, np.array([[1.0]]), ["spam"], [{"a": 1.0}])
    assert set(bank.predict(row, np.array([[1.0]]), [{"a": 1.0}]).probas()[0]) == {"ham", "spam"}

    three = bank_for(REGISTRY.create(name, {"classes": ["a", "b", "c"]}))
    three.columns(["a"])
    p = three.predict(np.array([three.add()]), np.array([[1.0]]), [{"a": 1.0}]).probas()
    assert p == [{"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}]


@pytest.mark.parametrize("fmt", ["json", "avro"])
def test_the_encoder_writes_only_the_classes_each_model_knows(fmt):
    prediction = BankPrediction(
        labels=[None, "b", "a"],
        classes=["a", "b", "c"],
        proba=np.array([[0.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.75, 0.0, 0.25]]),
        known=np.array([[False] * 3, [False, True, False], [True, False, True]]),
    )
    codec = PredictionCodec(fmt)
    values = codec.encode_batch(
        ["e1", "e2", "e3"], ["k1", "k2", "k3"], prediction.labels, n_updates=[0, 1, 2],
        event_timestamps=[-1] * 3, processed_timestamp=5, algorithm="pa",
        classes=prediction.classes, proba=prediction.proba, known=prediction.known,
    )  # fmt: skip
    assert [codec.decode(v).proba for v in values] == [{}, {"b": 1.0}, {"a": 0.75, "c": 0.25}]
    if fmt == "json":
        assert json.loads(values[0])["proba"] == {}
