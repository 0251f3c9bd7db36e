"""The model store: every assigned key's model as a row of one bank, plus the service's own
bookkeeping per key (last learned input offset, prequential counts).

Its changelog is keyed by model key; the value is :func:`oml.codecs.state.encode_state` bytes,
with the bookkeeping in the state's ``extra`` map, and a null deletes.  Writes are coalesced:
a key learned from a hundred times between two commits is written once.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import repeat
from operator import is_

import numpy as np

from oml.bank import bank_for
from oml.codecs.state import decode_state, encode_state, model_from_state
from oml.learner import Learner

# names of the bookkeeping fields inside ModelState.extra
LEARNED_OFFSET = "oml.learned_offset"
SCORED = "oml.scored"
CORRECT = "oml.correct"
ABS_ERR = "oml.abs_err"
SQ_ERR = "oml.sq_err"


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

    _ARRAYS = (("partition", -1), ("dirty", False), ("changed", False),
               ("learned_offset", -1), ("scored", 0), ("correct", 0), ("abs_err", 0.0),
               ("sq_err", 0.0))

    def __len__(self) -> int:
        return len(self.rows)

    def _new_row(self, partition: int, key: str, model: Learner | None) -> int:
        row = self.bank.add(model)
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
        extra = {
            **state.extra,
            LEARNED_OFFSET: int(self.learned_offset[row]),
            SCORED: int(self.scored[row]),
            CORRECT: int(self.correct[row]),
            ABS_ERR: float(self.abs_err[row]),
            SQ_ERR: float(self.sq_err[row]),
        }
        return encode_state(state, extra)

    def take_changes(self) -> list[tuple[int, str, bytes, int]]:
        """(partition, key, state bytes, learned offset) of each key learned since the last
        call: one record per key however often it learned."""
        rows = np.flatnonzero(self.dirty)
        self.dirty[rows] = False
        out = []
        for row in rows.tolist():
            key = self.row_key[row]
            if key is not None:
                out.append((int(self.partition[row]), key, self.export(key),
                            int(self.learned_offset[row])))
        return out

    def take_changed(self) -> np.ndarray:
        """Rows learned since the last call (for the metrics topic)."""
        rows = np.flatnonzero(self.changed)
        self.changed[rows] = False
        return rows

    def load(self, partition: int, key: str, data: bytes) -> None:
        """Put a key's model from its changelog bytes (raises StateError if they are bad)."""
        state = decode_state(data)
        model = model_from_state(state, self.registry)
        self.delete(key)
        row = self._new_row(partition, key, model)
        extra = state.extra
        self.learned_offset[row] = _number(extra, LEARNED_OFFSET, -1)
        self.scored[row] = _number(extra, SCORED, 0)
        self.correct[row] = _number(extra, CORRECT, 0)
        self.abs_err[row] = _number(extra, ABS_ERR, 0.0)
        self.sq_err[row] = _number(extra, SQ_ERR, 0.0)

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


def _number(extra: dict, name: str, default: float) -> float:
    value = extra.get(name)
    return default if value is None else value


def _grow(a: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full(size, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
