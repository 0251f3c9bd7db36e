"""The prequential protocol: order, passes, label delay, refusals, what is timed."""

from __future__ import annotations

import time

import numpy as np
import pytest
from conftest import Majority, Picky, Recorder

from oml.bench.prequential import prequential, shuffle_order


def rows(n: int) -> list[dict[str, float]]:
    return [{"i": float(i)} for i in range(n)]


def test_the_order_is_numpys_seeded_permutation() -> None:
    assert shuffle_order(1372, 0)[:8].tolist() == [118, 893, 582, 237, 198, 1123, 454, 1054]
    assert shuffle_order(10, 3).tolist() == np.random.default_rng(3).permutation(10).tolist()


def test_every_pass_replays_the_same_order_and_the_model_carries_over() -> None:
    y = ["a", "b", "b", "c", "c", "c"]
    order = [5, 0, 2, 1, 4, 3]
    trace = prequential(Majority(), rows(6), y, order=order, passes=2)
    assert trace.y_true == [y[i] for i in order] * 2
    # pass 1 starts from nothing; pass 2 starts from everything pass 1 learned
    assert trace.y_pred[:6] == [None, "c", "a", "a", "b", "b"]  # ties go to the lowest label
    assert trace.y_pred[6:] == ["c", "c", "c", "c", "b", "c"]  # counts a2 b4 c4 before the 5th
    assert trace.pass_slice(1) == slice(6, 12)
    assert len(trace.step_ns) == 12


def test_label_delay_learns_event_i_after_k_further_predictions() -> None:
    model = Recorder()
    trace = prequential(model, rows(4), list("abcd"), order=[0, 1, 2, 3], passes=2, delay=2)
    P = lambda i: ("predict", i)  # noqa: E731
    L = lambda i: ("learn", i)  # noqa: E731
    assert model.calls == [
        P(0), P(1), P(2), L(0), P(3), L(1),
        P(0), L(2), P(1), L(3), P(2), L(0), P(3), L(1),  # the queue runs across the pass
        L(2), L(3),  # what is still in flight at the end
    ]  # fmt: skip
    assert trace.refused == 0


def test_no_delay_is_test_then_train() -> None:
    model = Recorder()
    prequential(model, rows(3), list("abc"), order=[2, 0, 1])
    assert model.calls == [("predict", 2), ("learn", 2), ("predict", 0), ("learn", 0),
                           ("predict", 1), ("learn", 1)]  # fmt: skip


def test_delay_changes_what_a_predictable_learner_predicts() -> None:
    y = ["a", "b", "b", "b"]
    t0 = prequential(Majority(), rows(4), y, order=range(4), delay=0)
    t1 = prequential(Majority(), rows(4), y, order=range(4), delay=1)
    assert t0.y_pred == [None, "a", "a", "b"]
    assert t1.y_pred == [None, None, "a", "a"]


def test_refused_labels_are_counted_and_the_run_goes_on() -> None:
    trace = prequential(Picky(), rows(4), ["a", "bad", "a", "bad"], order=range(4), passes=2)
    assert trace.refused == 4
    assert trace.y_pred[1:] == ["a"] * 7


def test_probabilities_are_recorded_when_the_learner_has_them() -> None:
    trace = prequential(Majority(), rows(3), ["a", "b", "b"], order=range(3))
    assert trace.proba == [{}, {"a": 1.0}, {"a": 0.5, "b": 0.5}]
    assert prequential(Recorder(), rows(2), ["a", "b"], order=range(2)).proba is None

    class NoProba(Majority):
        def predict_proba_one(self, x):
            raise NotImplementedError

    assert prequential(NoProba(), rows(2), ["a", "b"], order=range(2)).proba is None


def test_only_predict_one_and_learn_one_are_timed() -> None:
    class SlowLearn(Majority):
        def learn_one(self, x, y):
            time.sleep(0.003)
            super().learn_one(x, y)

        def predict_proba_one(self, x):  # slow too, but outside the timed calls
            time.sleep(0.02)
            return super().predict_proba_one(x)

    trace = prequential(SlowLearn(), rows(5), list("abcde"), order=range(5), delay=2)
    ns = trace.step_ns
    assert (ns[2:] >= 3_000_000).all()  # each of these steps learned one delayed label
    assert (ns[2:] < 20_000_000).all()  # ... and the proba call was not counted
    assert (ns[:2] < 3_000_000).all()  # the first two steps only predicted


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="passes"):
        prequential(Majority(), rows(1), ["a"], order=[0], passes=0)
    with pytest.raises(ValueError, match="delay"):
        prequential(Majority(), rows(1), ["a"], order=[0], delay=-1)


def test_progress_is_reported_in_chunks_that_add_up() -> None:
    ticks: list[int] = []
    prequential(Majority(), rows(7), list("abcdefg"), order=range(7), passes=3,
                progress=ticks.append, progress_every=5)  # fmt: skip
    assert ticks == [5, 5, 5, 5, 1]
