"""The model store: every assigned key's model as a row of one bank, plus the service's own
bookkeeping per key (last learned input offset, prequential counts).

Its changelog is keyed by model key; the value is :func:`oml.codecs.state.encode_state` bytes,
with the bookkeeping in the state's ``extra`` map, and a null deletes.  Writes are coalesced:
a key learned from a hundred times between two commits is written once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from itertools import repeat
from operator import is_

import numpy as np

from oml.bank import bank_for
from oml.codecs.state import (
    SERVICE_EXTRA_PREFIX,
    StateGroup,
    decode_state,
    decode_states,
    encode_state,
    encode_states,
    model_from_state,
)
from oml.learner import Learner, ModelState, StateError

# names of the bookkeeping fields inside ModelState.extra
LEARNED_OFFSET = "oml.learned_offset"
SCORED = "oml.scored"
CORRECT = "oml.correct"
ABS_ERR = "oml.abs_err"
SQ_ERR = "oml.sq_err"
# each as (extra name, ModelStore array, value when a state has none)
_BOOKKEEPING = ((LEARNED_OFFSET, "learned_offset", -1), (SCORED, "scored", 0),
                (CORRECT, "correct", 0), (ABS_ERR, "abs_err", 0.0), (SQ_ERR, "sq_err", 0.0))


class ModelStore:
    """Models by key, as rows of one bank, with per-row bookkeeping kept in arrays so the hot
    loop marks a whole stage's rows at once."""

    def __init__(self, template: Learner, registry: object = None) -> None:
        self.template = template
        self.registry = registry
        self.bank = bank_for(template)
        self.rows: dict[str, int] = {}
        self.row_key: list[str | None] = []
        self.partition = np.full(64, -1, dtype=np.int64)
        self.dirty = np.zeros(64, dtype=bool)  # learned since the last changelog write
        self.changed = np.zeros(64, dtype=bool)  # learned since the last metrics emission
        self.learned_offset = np.full(64, -1, dtype=np.int64)
        self.scored = np.zeros(64, dtype=np.int64)
        self.correct = np.zeros(64, dtype=np.int64)
        self.abs_err = np.zeros(64)
        self.sq_err = np.zeros(64)
        self._layouts: set[tuple] = set()  # state layouts a learner round trip vouched for

    _ARRAYS = (("partition", -1), ("dirty", False), ("changed", False),
               ("learned_offset", -1), ("scored", 0), ("correct", 0), ("abs_err", 0.0),
               ("sq_err", 0.0))

    def __len__(self) -> int:
        return len(self.rows)

    def _new_row(self, partition: int, key: str, model: Learner | None,
                 state: ModelState | None = None) -> int:
        row = self.bank.add(model) if state is None else self.bank.add_state(state)
        if row >= len(self.scored):
            size = max(2 * len(self.scored), row + 1)
            for name, fill in self._ARRAYS:
                setattr(self, name, _grow(getattr(self, name), size, fill))
        for name, fill in self._ARRAYS:
            getattr(self, name)[row] = fill
        self.partition[row] = partition
        while len(self.row_key) <= row:
            self.row_key.append(None)
        self.row_key[row] = key
        self.rows[key] = row
        return row

    def rows_for_partitions(self, partitions: Sequence[int], keys: Sequence[str]) -> np.ndarray:
        """The row of each key's model, creating a fresh model, placed in the key's input
        partition, for each key never seen."""
        try:  # the common case: every key has its model
            return np.fromiter(map(self.rows.__getitem__, keys), np.intp, len(keys))
        except KeyError:
            pass
        found = list(map(self.rows.get, keys))
        if None in found:
            missing = np.fromiter(map(is_, found, repeat(None)), bool, len(found))
            for i in np.flatnonzero(missing).tolist():
                row = self.rows.get(keys[i])  # an earlier event may have made it
                found[i] = self._new_row(partitions[i], keys[i], None) if row is None else row
        return np.array(found, dtype=np.intp)

    def mark_learned(self, rows: np.ndarray) -> None:
        self.dirty[rows] = True
        self.changed[rows] = True

    def export(self, key: str) -> bytes:
        row = self.rows[key]
        state = self.bank.export(row)
        extra = {**state.extra, **{name: getattr(self, column)[row].item()
                                   for name, column, _ in _BOOKKEEPING}}
        return encode_state(state, extra)

    def take_changes(self) -> list[tuple[int, str, bytes, int]]:
        """(partition, key, state bytes, learned offset) of each key learned since the last
        call: one record per key however often it learned, in row order.  The states are
        exported and encoded a stacked batch at a time (:meth:`oml.bank.Bank.export_batches`,
        :func:`oml.codecs.state.encode_states`): the same bytes as :meth:`export`, key by key.
        """
        rows = np.flatnonzero(self.dirty)
        self.dirty[rows] = False
        row_key = self.row_key
        rows = rows[np.fromiter((row_key[r] is not None for r in rows.tolist()), bool, len(rows))]
        values: list[bytes] = [b""] * len(rows)
        for batch in self.bank.export_batches(rows):
            r = batch.rows
            encoded = encode_states(batch, {name: getattr(self, column)[r]
                                            for name, column, _ in _BOOKKEEPING})
            for i, value in zip(np.searchsorted(rows, r).tolist(), encoded, strict=True):
                values[i] = value
        rows_list = rows.tolist()
        return list(zip(self.partition[rows].tolist(), [row_key[r] for r in rows_list], values,
                        self.learned_offset[rows].tolist(), strict=True))

    def take_changed(self) -> np.ndarray:
        """Rows learned since the last call (for the metrics topic)."""
        rows = np.flatnonzero(self.changed)
        self.changed[rows] = False
        return rows

    def load(self, partition: int, key: str, data: bytes) -> None:
        """Put a key's model from its changelog bytes (raises StateError if they are bad).

        The first state of each layout (algorithm, version, params, features, labels, array
        shapes) goes through the learner (``import_state``, every check it makes); a later
        state of a layout that came back unchanged from that round trip goes straight into a
        bank row, with only what differs between such states checked (its arrays are finite
        float64, its update count a non-negative int).  Restore loads thousands of states of a
        handful of layouts, and building a learner per state cost about three quarters of it.
        """
        state = decode_state(data)
        extra = state.extra
        learner_state = state
        if extra:
            learner_state = dataclasses.replace(state, extra={
                k: v for k, v in extra.items() if not k.startswith(SERVICE_EXTRA_PREFIX)})
        layout = _layout(learner_state)
        if layout is not None and layout in self._layouts and _fine(learner_state):
            self.delete(key)
            row = self._new_row(partition, key, None, learner_state)  # no learner built
        else:
            model = model_from_state(state, self.registry)
            self.delete(key)
            row = self._new_row(partition, key, model)
            if layout is not None and len(self._layouts) < 1024 and (
                    model.export_state() == learner_state):
                self._layouts.add(layout)
        for name, column, default in _BOOKKEEPING:
            getattr(self, column)[row] = _number(extra, name, default)

    def load_many(self, partition: int, records: Sequence[tuple[str, bytes]]) -> None:
        """:meth:`load` for many keys (distinct), as restore gives them: the states decoded a
        layout at a time (:func:`oml.codecs.state.decode_states`) and put into bank rows a
        group at a time (:meth:`oml.bank.Bank.add_states`), with the checks :meth:`load` makes.
        What the grouped path does not take (a state alone of its kind, one it refuses) goes
        through :meth:`load`.  Raises :class:`LoadError` naming the record that failed."""
        values = [value for _, value in records]
        groups, single = decode_states(values)
        for group in groups:
            self._load_group(partition, records, group)
        for i in single:
            self._load_one(partition, records, i)

    def _load_one(self, partition: int, records: Sequence[tuple[str, bytes]], i: int) -> None:
        """:meth:`load` of record ``i``, its failure a :class:`LoadError` naming it."""
        try:
            self.load(partition, *records[i])
        except (StateError, ValueError) as exc:
            raise LoadError(i, exc) from exc

    def _load_group(self, partition: int, records: Sequence[tuple[str, bytes]],
                    group: StateGroup) -> None:
        positions = group.indices.tolist()
        learner = {k: v for k, v in group.shared.extra.items()
                   if not k.startswith(SERVICE_EXTRA_PREFIX)}
        if any(k in group.extras for k in learner):  # a learner's own numbers: one at a time
            for i in positions:
                self._load_one(partition, records, i)
            return
        first = dataclasses.replace(group.state(0), extra=learner)
        layout = _layout(first)
        if layout is None or layout not in self._layouts:
            # the learner vouches for the layout, or refuses
            self._load_one(partition, records, positions[0])
            if layout not in self._layouts:  # it changed in the round trip: one at a time
                for i in positions[1:]:
                    self._load_one(partition, records, i)
                return
            positions, group = positions[1:], _tail(group)
        if not positions:
            return
        fine = group.n_updates >= 0
        for a in group.arrays.values():
            fine &= a.dtype == np.float64 and np.isfinite(a.reshape(len(a), -1)).all(axis=1)
        if not fine.all():  # the first refused one: through load, which names it and raises
            i = positions[int(np.flatnonzero(~fine)[0])]
            self._load_one(partition, records, i)
            raise AssertionError("a state refused in a group was taken alone")  # pragma: no cover
        keys = [records[i][0] for i in positions]
        for key in keys:
            self.delete(key)
        shared = dataclasses.replace(group.shared, extra=learner)
        rows = self.bank.add_states(shared, group.arrays, group.n_updates)
        self._place(partition, keys, rows)
        extras = group.extras
        for name, column, default in _BOOKKEEPING:
            value = extras.get(name)
            getattr(self, column)[rows] = (
                _number(group.shared.extra, name, default) if value is None else value)

    def _place(self, partition: int, keys: list[str], rows: np.ndarray) -> None:
        """Bookkeeping for new bank ``rows`` holding ``keys``' models (as :meth:`_new_row`)."""
        top = int(rows.max()) + 1
        if top > len(self.scored):
            size = max(2 * len(self.scored), top)
            for name, fill in self._ARRAYS:
                setattr(self, name, _grow(getattr(self, name), size, fill))
        for name, fill in self._ARRAYS:
            getattr(self, name)[rows] = fill
        self.partition[rows] = partition
        if len(self.row_key) < top:
            self.row_key.extend([None] * (top - len(self.row_key)))
        for key, row in zip(keys, rows.tolist(), strict=True):
            self.row_key[row] = key
            self.rows[key] = row

    def delete(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is not None:
            self.bank.remove(row)
            self.row_key[row] = None
            self.dirty[row] = self.changed[row] = False

    def drop_partition(self, partition: int) -> None:
        for row in np.flatnonzero(self.partition == partition).tolist():
            key = self.row_key[row]
            if key is not None:
                self.delete(key)
            self.partition[row] = -1


class LoadError(Exception):
    """A record of :meth:`ModelStore.load_many` could not be loaded: ``index`` is its
    position, the cause is chained."""

    def __init__(self, index: int, cause: Exception) -> None:
        super().__init__(str(cause))
        self.index = index
        self.cause = cause


def _tail(group: StateGroup) -> StateGroup:
    """The group without its first state."""
    return StateGroup(group.indices[1:], group.shared,
                      {k: a[1:] for k, a in group.arrays.items()}, group.n_updates[1:],
                      {k: a[1:] for k, a in group.extras.items()})


def _layout(state: ModelState) -> tuple | None:
    """What a state shares with every state of its layout (None: not comparable so)."""
    try:
        key = (
            state.algorithm, state.version,
            tuple((k, type(v), v) for k, v in state.params.items()),
            tuple((type(f), f) for f in state.features),
            tuple((type(y), y) for y in state.labels),
            tuple((n, a.shape) for n, a in state.arrays.items()),
            tuple(state.extra),
        )
        hash(key)
    except (TypeError, AttributeError):  # a list among the params, or a foreign value
        return None
    return key


def _fine(state: ModelState) -> bool:
    """What a state of a known layout must still be: finite float64 arrays and a
    non-negative int update count (the learner's own checks of those)."""
    n = state.n_updates
    if type(n) is not int or n < 0:
        return False
    return all(a.dtype == np.float64 and np.isfinite(a).all() for a in state.arrays.values())


def _number(extra: dict, name: str, default: float) -> float:
    value = extra.get(name)
    return default if value is None else value


def _grow(a: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full(size, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
