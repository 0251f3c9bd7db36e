"""The bank fast path gives exactly (``==`` on floats) what one model at a time gives."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oml_algorithms.pa import PAClassifier, PARegressor
from oml_algorithms.scw import SCWClassifier

from oml.bank import BankPrediction, bank_for
from oml.learner import InvalidInput, ModelState

FEATURES = ["a", "b", "c", "d", "e", "f", "g"]
LABELS = ["x", "y", "z", "w"]


class TinyAutoSCW(SCWClassifier):
    """SCW whose "auto" covariance goes diagonal past 3 features, to see the switch happen."""

    auto_full_max = 3


def align(model, features: list) -> None:
    """Give a standalone model the bank's columns (the bank's contract is per column layout)."""
    new = [f for f in features if f not in model._index]
    if new:
        model._add_columns(new)


def in_columns(state: ModelState, features: list, n_bias: int, a: float = 1.0) -> ModelState:
    """``state`` with its columns rearranged (and widened) into ``features``: what the model is,
    written in another column order.  Bias column first; a new column as if never seen."""
    where = [state.features.index(f) + n_bias if f in state.features else -1 for f in features]
    cols = list(range(n_bias)) + where
    arrays = {}
    for name, old in state.arrays.items():
        n_col = old.ndim - 1 if name != "sigma" or old.ndim == 2 else 2
        new = np.zeros(old.shape[:1] + (len(cols),) * n_col)
        if name == "sigma":
            idx = np.arange(len(cols))
            if n_col == 2:
                new[:, idx, idx] = a
            else:
                new[:] = a
        for i, c in enumerate(cols):
            if c < 0:
                continue
            if n_col == 1:
                new[:, i] = old[:, c]
            elif n_col == 2:
                for j, c2 in enumerate(cols):
                    if c2 >= 0:
                        new[:, i, j] = old[:, c, c2]
        arrays[name] = new if n_col else old
    return ModelState(
        state.algorithm,
        state.version,
        state.params,
        list(features),
        state.labels,
        arrays,
        state.n_updates,
    )


def assert_same_prediction(pred: BankPrediction, i: int, model, x: dict) -> None:
    label = model.predict_one(x)
    assert pred.labels[i] == label and type(pred.labels[i]) is type(label)
    if pred.classes is None:  # a regressor
        assert pred.score[i] == label
        return
    proba = model.predict_proba_one(x)
    for j, c in enumerate(pred.classes):
        assert pred.proba[i, j] == proba.get(c, 0.0), (c, pred.proba[i], proba)
    assert set(proba) <= set(pred.classes)


def run_stages(template, events, stages, check_every_stage=True):
    """Feed ``events`` (key, x, y) to a bank in ``stages`` and to one model per key; compare."""
    bank = bank_for(template)
    rows: dict[int, int] = {}
    models: dict[int, object] = {}
    start = 0
    for size in stages:
        stage = events[start : start + size]
        start += size
        if not stage:
            break
        for key, _, _ in stage:
            if key not in rows:
                rows[key] = bank.add()
                models[key] = template.clone()
        names = list(dict.fromkeys(k for _, x, _ in stage for k in x))
        cols = dict(zip(names, bank.columns(names).tolist(), strict=True))
        X = np.zeros((len(stage), len(bank.features)))
        for i, (_, x, _) in enumerate(stage):
            for k, v in x.items():
                X[i, cols[k]] = v
        stage_rows = np.array([rows[k] for k, _, _ in stage])
        for key, _, _ in stage:
            align(models[key], bank.features)

        pred = bank.predict(stage_rows, X)
        for i, (key, x, _) in enumerate(stage):
            if x and all(math.isfinite(v) for v in x.values()):
                assert_same_prediction(pred, i, models[key], x)

        errors = bank.learn(stage_rows, X, [y for _, _, y in stage], xs=[x for _, x, _ in stage])
        for i, (key, x, y) in enumerate(stage):
            try:
                models[key].learn_one(x, y)
            except InvalidInput as exc:
                assert errors[i] is not None and errors[i].reason == exc.reason
            else:
                assert errors[i] is None

        if check_every_stage:
            for key, row in rows.items():
                align(models[key], bank.features)
                assert bank.get(row).export_state() == models[key].export_state()
    for key, row in rows.items():
        align(models[key], bank.features)
        assert bank.get(row).export_state() == models[key].export_state()
        assert bank.n_updates(np.array([row]))[0] == models[key].n_updates
    return bank, rows, models


values = st.one_of(
    st.floats(-4, 4, allow_nan=False, width=64),
    st.integers(-3, 3),
    st.just(0.0),
    st.sampled_from([1.7e12, -3e9, 1e6]),  # raw scales (epoch-ms, amounts): the same there too
)


@st.composite
def event_streams(draw, regression: bool = False):
    n_keys = draw(st.integers(1, 5))
    key_labels = [
        draw(st.lists(st.sampled_from(LABELS), min_size=1, max_size=4, unique=True))
        for _ in range(n_keys)
    ]
    n_features = draw(st.integers(1, len(FEATURES)))
    events = []
    for _ in range(draw(st.integers(1, 40))):
        key = draw(st.integers(0, n_keys - 1))
        names = draw(st.lists(st.sampled_from(FEATURES[:n_features]), unique=True, max_size=5))
        x = {k: draw(values) for k in names}
        if regression:
            y = draw(st.floats(-20, 20, allow_nan=False))
        else:
            y = draw(st.sampled_from(key_labels[key]))
        bad = draw(st.integers(0, 19))
        if bad == 0:
            y = None  # a label (or target) a model refuses
        elif bad == 1 and x:
            x[next(iter(x))] = math.nan
        if not x and draw(st.booleans()):
            x = {"a": 0.0}
        events.append((key, x, y))
    stages = draw(st.lists(st.integers(1, 6), min_size=1, max_size=len(events)))
    stages.append(len(events))
    return events, stages


def unique_stages(events, stages):
    """Cut stages further so that no key appears twice in one."""
    out = []
    start = 0
    for size in stages:
        chunk = events[start : start + size]
        start += size
        while chunk:
            seen: set = set()
            n = 0
            while n < len(chunk) and chunk[n][0] not in seen:
                seen.add(chunk[n][0])
                n += 1
            out.append(n)
            chunk = chunk[n:]
    return out


pa_templates = st.builds(
    PAClassifier,
    C=st.sampled_from([0.1, 1.0, 5.0]),
    mode=st.sampled_from([0, 1, 2]),
    bias=st.sampled_from(["intercept", "feature", "none"]),
    classes=st.sampled_from([None, None, ["x", "y"], ["x", "y", "z"]]),
)
scw_templates = st.sampled_from([SCWClassifier, TinyAutoSCW]).flatmap(
    lambda cls: st.builds(
        cls,
        mode=st.sampled_from([1, 2]),
        C=st.sampled_from([0.5, 1.0]),
        eta=st.sampled_from([None, 0.6, 0.95]),
        a=st.sampled_from([1.0, 0.5]),
        covariance=st.sampled_from(["auto", "full", "diagonal"]),
        bias=st.sampled_from(["feature", "none"]),
        classes=st.sampled_from([None, None, ["y", "z"], ["w", "x", "y"]]),
    )
)
reg_templates = st.builds(
    PARegressor,
    C=st.sampled_from([0.1, 1.0]),
    mode=st.sampled_from([0, 1, 2]),
    eps=st.sampled_from([0.0, 0.1]),
    bias=st.sampled_from(["intercept", "feature", "none"]),
)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(template=pa_templates, data=event_streams())
def test_pa_bank_is_exact(template, data):
    events, stages = data
    run_stages(template, events, unique_stages(events, stages))


@SETTINGS
@given(template=scw_templates, data=event_streams())
def test_scw_bank_is_exact(template, data):
    events, stages = data
    run_stages(template, events, unique_stages(events, stages))


@SETTINGS
@given(template=reg_templates, data=event_streams(regression=True))
def test_pa_regressor_bank_is_exact(template, data):
    events, stages = data
    run_stages(template, events, unique_stages(events, stages))


def test_bank_moves_models_in_and_out():
    rng = np.random.default_rng(1)
    template = SCWClassifier()
    models = [SCWClassifier() for _ in range(3)]
    for i, m in enumerate(models):
        for _ in range(30):
            x = {f"f{j}": float(v) for j, v in enumerate(rng.normal(size=3 + i))}
            m.learn_one(x, ["a", "b", "c", "d"][int(rng.integers(0, 2 + i))])
    bank = SCWClassifier.make_bank(template)
    bank.columns(["zz"])  # a column none of the models has
    rows = [bank.add(m) for m in models]
    for m, row in zip(models, rows, strict=True):
        assert bank.get(row).export_state() == in_columns(m.export_state(), bank.features, 1)
    bank.remove(rows[1])
    again = bank.add(models[1])
    assert again == rows[1]
    assert bank.get(again).export_state() == in_columns(models[1].export_state(), bank.features, 1)
    with pytest.raises(ValueError, match="params"):
        bank.add(SCWClassifier(mode=2))
    with pytest.raises(TypeError):
        bank.add(PAClassifier())


def test_bank_capacity_grows():
    bank = PAClassifier.make_bank(PAClassifier())
    rows = np.array([bank.add() for _ in range(100)])
    bank.columns([f"f{i}" for i in range(40)])
    X = np.ones((100, 40))
    errors = bank.learn(rows, X, [i % 2 == 0 for i in range(100)])
    assert errors == [None] * 100
    pred = bank.predict(rows, X)
    assert pred.classes == [False, True]
    assert pred.proba.shape == (100, 2)
    assert bank.n_updates(rows).tolist() == [1] * 100


def test_bank_rejects_a_bad_stage():
    bank = PAClassifier.make_bank(PAClassifier())
    row = bank.add()
    bank.columns(["a"])
    with pytest.raises(ValueError, match="shape"):
        bank.predict(np.array([row]), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="one event per row"):
        bank.learn(np.array([row, row]), np.zeros((2, 1)), [True, False])
    with pytest.raises(ValueError, match="no model"):
        bank.predict(np.array([row + 1]), np.zeros((1, 1)))


def test_fresh_rows_predict_nothing():
    bank = SCWClassifier.make_bank(SCWClassifier())
    rows = np.array([bank.add(), bank.add()])
    bank.columns(["a"])
    pred = bank.predict(rows, np.ones((2, 1)))
    assert pred.labels == [None, None]
    assert pred.classes == [] and pred.proba.shape == (2, 0)


def test_auto_switch_in_a_bank_with_multiclass_rows():
    """A deterministic stream through TinyAutoSCW (full up to 3 features): rows go multiclass
    while full, then the fourth feature turns the whole bank diagonal."""
    rng = np.random.default_rng(7)
    events = []
    for i in range(60):
        key = i % 3
        names = FEATURES[: 2 if i < 30 else 5]
        x = {k: float(v) for k, v in zip(names, rng.normal(size=len(names)), strict=False)}
        events.append((key, x, LABELS[int(rng.integers(0, 2 + key))]))
    bank, rows, _ = run_stages(TinyAutoSCW(), events, [3] * 20)
    assert not bank.full and len(bank.classes) == 4
    assert any(len(bank.export(r).labels) > 2 for r in rows.values())  # multiclass rows


def test_a_prediction_may_name_a_row_twice():
    model = PAClassifier()
    model.learn_one({"a": 1.0}, True)
    model.learn_one({"a": -1.0}, False)
    bank = PAClassifier.make_bank(model)
    row = bank.add(model)
    pred = bank.predict(np.array([row, row]), np.array([[2.0], [-2.0]]))
    assert pred.labels == [True, False]
    assert pred.proba[0, 1] == model.predict_proba_one({"a": 2.0})[True]
