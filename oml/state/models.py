"""The model store: every assigned key's model as a row of one bank, plus the service's own
bookkeeping per key (last learned input offset, prequential counts).

Its changelog is keyed by model key; the value is :func:`oml.codecs.state.encode_state` bytes,
with the bookkeeping in the state's ``extra`` map, and a null deletes.  Writes are coalesced:
a key learned from a hundred times between two commits is written once.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from oml.base import Learner
from oml.codecs.state import decode_state, encode_state, model_from_state

# names of the bookkeeping fields inside ModelState.extra
LEARNED_OFFSET = "oml.learned_offset"
SCORED = "oml.scored"
CORRECT = "oml.correct"
ABS_ERR = "oml.abs_err"
SQ_ERR = "oml.sq_err"


class ModelStore:
    def __init__(self, template: Learner, registry: object = None) -> None:
        self.template = template
        self.registry = registry
        self.bank = type(template).make_bank(template)
        self.rows: dict[str, int] = {}
        self.partition_keys: dict[int, set[str]] = defaultdict(set)
        self.dirty: dict[int, set[str]] = defaultdict(set)
        self.learned_offset = np.full(64, -1, dtype=np.int64)
        self.scored = np.zeros(64, dtype=np.int64)
        self.correct = np.zeros(64, dtype=np.int64)
        self.abs_err = np.zeros(64)
        self.sq_err = np.zeros(64)

    def __len__(self) -> int:
        return len(self.rows)

    def _new_row(self, partition: int, key: str, model: Learner | None) -> int:
        row = self.bank.add(model)
        if row >= len(self.scored):
            size = max(2 * len(self.scored), row + 1)
            self.learned_offset = _grow(self.learned_offset, size, -1)
            self.scored = _grow(self.scored, size, 0)
            self.correct = _grow(self.correct, size, 0)
            self.abs_err = _grow(self.abs_err, size, 0.0)
            self.sq_err = _grow(self.sq_err, size, 0.0)
        self.learned_offset[row] = -1
        self.scored[row] = self.correct[row] = 0
        self.abs_err[row] = self.sq_err[row] = 0.0
        self.rows[key] = row
        self.partition_keys[partition].add(key)
        return row

    def rows_for(self, partition: int, keys: Sequence[str]) -> np.ndarray:
        """The row of each key's model, creating fresh models for keys never seen."""
        return self.rows_for_partitions([partition] * len(keys), keys)

    def rows_for_partitions(self, partitions: Sequence[int], keys: Sequence[str]) -> np.ndarray:
        """Like :meth:`rows_for`, each key with its own input partition."""
        found = list(map(self.rows.get, keys))
        if None in found:
            for i, row in enumerate(found):
                if row is None:
                    found[i] = self.rows.get(keys[i])  # an earlier event may have made it
                    if found[i] is None:
                        found[i] = self._new_row(partitions[i], keys[i], None)
        return np.array(found, dtype=np.intp)

    def mark_dirty(self, partition: int, keys: Sequence[str]) -> None:
        self.dirty[partition].update(keys)

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
        return encode_state(dataclasses.replace(state, extra=extra))

    def model(self, key: str) -> Learner:
        return self.bank.get(self.rows[key])

    def take_changes(self, partition: int) -> list[tuple[str, bytes]]:
        keys = self.dirty.pop(partition, ())
        return [(key, self.export(key)) for key in sorted(keys) if key in self.rows]

    def load(self, partition: int, key: str, data: bytes) -> None:
        """Put a key's model from its changelog bytes (raises StateError if they are bad)."""
        state = decode_state(data)
        model = model_from_state(state, self.registry)
        self.delete(key)
        row = self._new_row(partition, key, model)
        extra = state.extra
        self.learned_offset[row] = int(extra.get(LEARNED_OFFSET, -1) or -1)
        self.scored[row] = int(extra.get(SCORED, 0) or 0)
        self.correct[row] = int(extra.get(CORRECT, 0) or 0)
        self.abs_err[row] = float(extra.get(ABS_ERR, 0.0) or 0.0)
        self.sq_err[row] = float(extra.get(SQ_ERR, 0.0) or 0.0)

    def delete(self, key: str) -> None:
        row = self.rows.pop(key, None)
        if row is not None:
            self.bank.remove(row)
            for keys in self.partition_keys.values():
                keys.discard(key)

    def drop_partition(self, partition: int) -> None:
        for key in self.partition_keys.pop(partition, set()):
            row = self.rows.pop(key, None)
            if row is not None:
                self.bank.remove(row)
        self.dirty.pop(partition, None)


def _grow(a: np.ndarray, size: int, fill: float) -> np.ndarray:
    out = np.full(size, fill, dtype=a.dtype)
    out[: len(a)] = a
    return out
