from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from oml.stages import plan_stages


@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), max_size=60))
def test_stages_keep_each_keys_order_and_learn_each_key_once_per_stage(events):
    keys = [k for k, _ in events]
    feedback = [fb for _, fb in events]
    stages = plan_stages(keys, feedback)
    seen = sorted(int(i) for u, f in stages for part in (u, f) for i in part)
    assert seen == list(range(len(events)))
    position = {}
    for s, (unlabeled, labeled) in enumerate(stages):
        assert all(not feedback[i] for i in unlabeled) and all(feedback[i] for i in labeled)
        learned = [keys[i] for i in labeled]
        assert len(learned) == len(set(learned))  # at most one update per key per stage
        for i in unlabeled:
            position[int(i)] = (s, 0)
        for i in labeled:
            position[int(i)] = (s, 1)
    # replaying the stages in order gives every key its events in the order they came,
    # except that unlabeled events between two updates may be reordered among themselves
    for key in set(keys):
        mine = [i for i, k in enumerate(keys) if k == key]
        learns_before = 0
        for i in mine:
            assert position[i][0] == learns_before
            learns_before += feedback[i]


def test_a_batch_with_no_feedback_is_one_stage():
    keys = [random.randrange(3) for _ in range(10)]
    (unlabeled, labeled), = plan_stages(keys, [False] * 10)
    assert unlabeled.tolist() == list(range(10)) and labeled.tolist() == []
