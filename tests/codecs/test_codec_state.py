"""The model-state writer: hand-laid Avro, byte for byte what fastavro writes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from oml.codecs.state import _fast_body, _fastavro_body, decode_state, encode_state
from oml.learner import ModelState, StateError

LONG = st.integers(-(2**63), 2**63 - 1)
SCALAR = st.none() | st.booleans() | LONG | st.floats(allow_nan=False) | st.text(max_size=12)
PARAM = SCALAR | st.lists(SCALAR, max_size=4)
LABEL = st.booleans() | LONG | st.floats(allow_nan=False) | st.text(max_size=8)
FEATURE = st.text(max_size=10) | LONG


@st.composite
def arrays(draw: st.DrawFn) -> np.ndarray:
    kind = draw(st.sampled_from(["float64", "int64", "bool"]))
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=3)))
    n = int(np.prod(shape))
    if kind == "float64":
        values = draw(st.lists(st.floats(allow_nan=True), min_size=n, max_size=n))
    elif kind == "int64":
        values = draw(st.lists(LONG, min_size=n, max_size=n))
    else:
        values = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    return np.array(values, dtype=kind).reshape(shape)


STATES = st.builds(
    ModelState,
    algorithm=st.text(max_size=12),
    version=st.integers(-(2**31), 2**31 - 1),
    params=st.dictionaries(st.text(max_size=8), PARAM, max_size=5),
    features=st.lists(FEATURE, max_size=6),
    labels=st.lists(LABEL, max_size=4),
    arrays=st.dictionaries(st.text(max_size=6), arrays(), max_size=3),
    n_updates=st.integers(0, 2**63 - 1),
    extra=st.dictionaries(st.text(max_size=8), SCALAR, max_size=5),
)


@settings(max_examples=300, deadline=None)
@given(STATES)
def test_the_hand_written_writer_writes_fastavros_bytes(state):
    fast = _fast_body(state, state.params, state.extra)
    assert fast is not None
    assert fast == _fastavro_body(state, state.params, state.extra)
    again = decode_state(encode_state(state))
    assert (again.algorithm, again.version, again.params, again.labels, again.n_updates) == (
        state.algorithm, state.version, state.params, state.labels, state.n_updates,
    )
    assert list(again.arrays) == list(state.arrays)
    for name, a in state.arrays.items():
        np.testing.assert_array_equal(again.arrays[name], a)


def _state(**changes):
    base = dict(algorithm="pa", version=1, params={"C": 1.0}, features=["x"], labels=[True],
                arrays={"w": np.zeros((1, 1))}, n_updates=3, extra={})
    return ModelState(**{**base, **changes})


@pytest.mark.parametrize("state", [
    _state(params={"C": np.float64(0.5)}),  # numpy scalars become plain numbers
    _state(extra={"oml.offset": np.int64(7)}),
    _state(params={"classes": (1, 2)}),
], ids=["numpy-param", "numpy-extra", "tuple-param"])
def test_what_the_fast_writer_leaves_to_fastavro_still_encodes(state):
    """Types outside the hand-written writer's (numpy scalars, tuples) take fastavro's path."""
    assert decode_state(encode_state(state)).n_updates == 3


@pytest.mark.parametrize("state", [
    _state(version=2**31),
    _state(arrays={"w": np.zeros(2, dtype=np.uint8)}),
    _state(params={"f": object()}),
], ids=["version-too-big", "unsigned-array", "object-param"])
def test_what_fits_no_schema_is_a_state_error(state):
    with pytest.raises(StateError):
        encode_state(state)
