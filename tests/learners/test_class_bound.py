"""``max_classes``: no key's model grows without bound from labels.

A label that would give a row one class too many is refused with TooManyClasses (an
InvalidInput whose reason, ``too_many_classes``, the service uses as the dead-letter reason);
the row is left exactly as it was and keeps learning from the classes it knows.  Checked for
every registered classifier.
"""

from __future__ import annotations

import numpy as np
import pytest
from river import base as river_base

from oml.bank import bank_for
from oml.config import ConfigError, load_config
from oml.learner import InvalidInput, TooManyClasses
from oml.plugins import load_registry

REGISTRY = load_registry()
CLASSIFIERS = [
    name for name in REGISTRY.names() if not isinstance(REGISTRY.create(name), river_base.Regressor)
]
X1 = np.array([[1.0, -0.5]])
XS1 = [{"a": 1.0, "b": -0.5}]


def learn(bank, row: int, y, x=X1, xs=XS1):
    return bank.learn(np.array([row]), x, [y], xs)[0]


@pytest.mark.parametrize("name", CLASSIFIERS)
@pytest.mark.parametrize("bound", [1, 2, 3])
def test_a_class_beyond_the_bound_is_refused_and_changes_nothing(name, bound):
    bank = bank_for(REGISTRY.create(name), max_classes=bound)
    bank.columns(["a", "b"])
    row, other = bank.add(), bank.add()
    labels = ["a", "b", "c", "d"]
    for y in labels[:bound]:
        assert learn(bank, row, y) is None
    before = bank.export(row)

    error = learn(bank, row, labels[bound])
    assert isinstance(error, TooManyClasses) and isinstance(error, InvalidInput)
    assert error.reason == "too_many_classes"
    assert bank.export(row) == before
    assert bank.predict(np.array([row]), X1, XS1).labels[0] in labels[:bound]

    # it still learns from the classes it knows, and the bound is per row
    assert learn(bank, row, labels[0], -X1, [{"a": -1.0, "b": 0.5}]) is None
    assert learn(bank, other, labels[bound]) is None


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_in_one_stage_only_the_event_past_the_bound_is_refused(name):
    bank = bank_for(REGISTRY.create(name), max_classes=2)
    bank.columns(["a", "b"])
    full, fresh = bank.add(), bank.add()
    learn(bank, full, "x")
    learn(bank, full, "y")
    X = np.vstack([X1, X1])
    errors = bank.learn(np.array([full, fresh]), X, ["z", "z"], XS1 * 2)
    assert isinstance(errors[0], TooManyClasses) and errors[1] is None
    assert bank.export(full).labels == ["x", "y"]
    assert bank.export(fresh).labels == ["z"]


@pytest.mark.parametrize("name", ["pa", "scw"])
def test_a_refused_label_does_not_join_the_banks_class_list(name):
    bank = bank_for(REGISTRY.create(name), max_classes=1)
    bank.columns(["a", "b"])
    row = bank.add()
    learn(bank, row, "ok")
    assert isinstance(learn(bank, row, "x" * 5000), TooManyClasses)
    assert bank.predict(np.array([row]), X1, XS1).classes == ["ok"]


def test_max_classes_is_configured_and_validated(tmp_path):
    assert load_config(None, {}).model.max_classes == 1000
    path = tmp_path / "oml.toml"
    path.write_text("[model]\nmax_classes = 5\n")
    assert load_config(str(path), {}).model.max_classes == 5
    path.write_text("[model]\nmax_classes = 0\n")
    with pytest.raises(ConfigError, match=r"model\.max_classes: must be at least 1"):
        load_config(str(path), {})
