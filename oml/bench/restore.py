"""``oml bench throughput --restore N``: restoring N keys' models, against a bare read of the
same changelog in the same run, and the memory each restored key takes.

A models changelog partition is filled with ``N`` keys' states (``pa`` by default, 4 features,
trained on random events, each key written ``records_per_key`` times with the ``oml.offset``
header a commit gives it).  Then, on the same broker:

* **bare read**: a :class:`~oml.kafka.restore.ChangelogReader` reads the partition to its end
  into a last-value-per-key dict (the least any restore does);
* **restore**: what the service does on assignment (``Checkpoint.restore``): the last record
  per key among committed input (:meth:`~oml.kafka.restore.ChangelogReader.latest`), then every
  state into the model store (:meth:`~oml.state.models.ModelStore.load_many`).

Both run under the service's garbage-collector threshold (``processing.gc_threshold``).  The
memory is measured apart (tracing allocations slows them): the bytes the store holds after
restoring, per key, against the bytes of one model's state arrays.
"""

from __future__ import annotations

import gc
import time
import tracemalloc
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from oml.kafka.restore import OFFSET_HEADER, ChangelogReader


@dataclass
class RestoreResult:
    keys: int
    records: int
    algorithm: str
    state_bytes: int
    bare_read_s: float
    restore_s: float
    ratio: float  # the restore's rate over the bare read's
    models_per_s: float
    bytes_per_key: float  # what the model store holds per restored key, all in
    array_bytes_per_key: float  # of which the model's own state arrays
    overhead_bytes_per_key: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_states(algorithm: str, keys: int, features: int = 4) -> list[bytes]:
    """One trained state per key (``key-000000001``...), as a commit writes them."""
    from oml.plugins import default_registry
    from oml.state.models import ModelStore

    registry = default_registry()
    store = ModelStore(registry.create(algorithm), registry)
    rows = store.rows_for_partitions([0] * keys, [_key(i) for i in range(keys)])
    store.bank.columns([f"f{j}" for j in range(features)])
    rng = np.random.default_rng(0)
    regressor = not hasattr(store.template, "predict_proba_one")
    for _ in range(2):
        X = rng.normal(size=(keys, features))
        y = X.sum(axis=1)
        store.bank.learn(rows, X, y.tolist() if regressor else (y > 0).tolist())
    store.mark_learned(rows)
    store.learned_offset[rows] = np.arange(keys)
    return [value for _, _, value, _ in store.take_changes()]


def _key(i: int) -> str:
    return f"key-{i:09d}"


def fill(bootstrap: str, topic: str, records: int, keys: int, values: list[bytes], *,
         offset_headers: bool = True) -> float:
    """``records`` records into partition 0 of ``topic``: record *i* has key ``i % keys`` and
    value ``values[i % len(values)]`` (and, with ``offset_headers``, the ``oml.offset`` header
    ``i``, as a commit writes it).  Returns records per second produced."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    started = time.perf_counter()
    for i in range(records):
        headers: list[tuple[str, str | bytes | None]] | None = (
            [(OFFSET_HEADER, b"%d" % i)] if offset_headers else None)
        while True:
            try:
                producer.produce(topic, key=_key(i % keys).encode(),
                                 value=values[i % len(values)], partition=0, headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 50_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} changelog records not delivered")
    return records / (time.perf_counter() - started)


def _restore(reader: ChangelogReader, topic: str, algorithm: str) -> Any:
    from oml.plugins import default_registry
    from oml.state.models import ModelStore

    registry = default_registry()
    store = ModelStore(registry.create(algorithm), registry)
    latest = reader.latest(topic, 0, before=2**62)
    store.load_many(0, [(key.decode(), value) for key, (value, _) in latest.items()])
    return store


def measure(bootstrap: str, *, keys: int, algorithm: str = "pa", records_per_key: int = 3,
            gc_threshold: int = 50_000) -> RestoreResult:
    """Fill a changelog with ``keys`` states and time the bare read and the restore of it."""
    topic = f"bench-restore-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(30)
    states = model_states(algorithm, keys)
    records = keys * records_per_key
    fill(bootstrap, topic, records, keys, states)

    thresholds = gc.get_threshold()
    if gc_threshold:
        gc.set_threshold(gc_threshold, *thresholds[1:])
    try:
        with ChangelogReader(bootstrap) as reader:
            started = time.perf_counter()
            bare: dict[Any, Any] = {}
            for key, value, _ in reader.read(topic, 0):
                bare[key] = value
            bare_s = time.perf_counter() - started
        del bare
        with ChangelogReader(bootstrap) as reader:
            started = time.perf_counter()
            store = _restore(reader, topic, algorithm)
            restore_s = time.perf_counter() - started
    finally:
        gc.set_threshold(*thresholds)
    if len(store) != keys:
        raise RuntimeError(f"restored {len(store)} models of {keys}")
    one = store.bank.export(store.rows[_key(0)])
    array_bytes = sum(a.nbytes for a in one.arrays.values())
    del store

    with ChangelogReader(bootstrap) as reader:
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = _restore(reader, topic, algorithm)  # alive while its memory is counted
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
    if len(kept) != keys:
        raise RuntimeError(f"restored {len(kept)} models of {keys}")
    per_key = held / keys
    return RestoreResult(
        keys=keys, records=records, algorithm=algorithm, state_bytes=len(states[0]),
        bare_read_s=round(bare_s, 3), restore_s=round(restore_s, 3),
        ratio=round(bare_s / restore_s, 3), models_per_s=round(keys / restore_s),
        bytes_per_key=round(per_key, 1), array_bytes_per_key=float(array_bytes),
        overhead_bytes_per_key=round(per_key - array_bytes, 1),
    )
