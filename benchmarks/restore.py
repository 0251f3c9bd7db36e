"""How fast the restore reader reads a changelog partition (not a test: run it by hand).

    .venv/bin/python benchmarks/restore.py --records 1000000

Fills one partition of a fresh topic with ``--records`` records (keys from a pool of
``--keys``, ``--value-bytes`` random values, lz4-compressed producer batches) on the embedded
broker, or on ``OML_BOOTSTRAP_SERVERS``, then reads it back to the end with
:meth:`ChangelogReader.read` (into a last-per-key dict) and with :meth:`ChangelogReader.batches`,
and prints records per second as one JSON line each.

With ``--models ALGO`` the values are real model states instead (``--keys`` models of ``ALGO``
with 4 features, trained on random events, each key's state written ``records / keys`` times,
with the ``oml.offset`` header a commit gives it),
and a third step restores them as the service does: ``ChangelogReader.latest``, then
``ModelStore.load_many`` (or ``load`` per key, in versions without it), timed against the bare
read of the same partition in the same run:

    python benchmarks/restore.py --records 300000 --keys 100000 --models pa
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import time
import uuid
from collections.abc import Iterator

from confluent_kafka.admin import AdminClient, NewTopic

from oml.bench.restore import fill, model_states
from oml.kafka.broker import EmbeddedBroker
from oml.kafka.restore import ChangelogReader


@contextlib.contextmanager
def _cluster() -> Iterator[str]:
    external = os.environ.get("OML_BOOTSTRAP_SERVERS", "").strip()
    if external:
        yield external
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--gc-threshold", type=int, default=50_000,
                        help="the collector's first threshold while reading, as the service "
                             "sets it (processing.gc_threshold; 0 leaves Python's)")
    parser.add_argument("--models", metavar="ALGO",
                        help="fill with model states of ALGO and time their restore too")
    args = parser.parse_args()
    states = None if args.models is None else model_states(args.models, args.keys)
    if args.gc_threshold:  # restore runs inside the service's loop, under its threshold
        gc.set_threshold(args.gc_threshold, *gc.get_threshold()[1:])

    with _cluster() as bootstrap:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"bench-restore-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, 1, -1)])[topic].result(30)
        # incompressible random values, like model state, or the states themselves
        values = states or [os.urandom(args.value_bytes) for _ in range(1024)]
        produce_rate = fill(bootstrap, topic, args.records, args.keys, values,
                            offset_headers=states is not None)
        common = {"records": args.records, "keys": args.keys, "gc_threshold": args.gc_threshold,
                  "value_bytes": args.value_bytes if states is None else len(states[0]),
                  "broker": "embedded" if "OML_BOOTSTRAP_SERVERS" not in os.environ else bootstrap}
        print(json.dumps({**common, "step": "produce", "records_per_s": round(produce_rate)}))

        started = time.perf_counter()
        latest: dict[bytes | None, bytes | None] = {}
        n = 0
        with ChangelogReader(bootstrap, batch_size=args.batch_size) as reader:
            for key, value, _offset in reader.read(topic, 0):
                latest[key] = value
                n += 1
        bare = time.perf_counter() - started
        assert n == args.records, (n, args.records)
        print(json.dumps({**common, "step": "ChangelogReader.read + last-per-key dict",
                          "seconds": round(bare, 3), "records_per_s": round(n / bare),
                          "keys": len(latest)}))

        if args.models is not None:
            from oml.plugins import default_registry
            from oml.state.models import ModelStore

            registry = default_registry()
            store = ModelStore(registry.create(args.models), registry)
            with ChangelogReader(bootstrap, batch_size=args.batch_size) as reader:
                started = time.perf_counter()
                latest = reader.latest(topic, 0, before=2**62)
                records = [(key.decode(), value) for key, (value, _) in latest.items()]
                read = time.perf_counter() - started
                if hasattr(store, "load_many"):  # restore's path, in versions that have it
                    store.load_many(0, records)
                else:
                    for key, value in records:
                        store.load(0, key, value)
                seconds = time.perf_counter() - started
            assert len(store) == args.keys, (len(store), args.keys)
            print(json.dumps({**common, "step": f"restore {args.models} models (latest + load)",
                              "seconds": round(seconds, 3), "of_which_latest_s": round(read, 3),
                              "records_per_s": round(args.records / seconds),
                              "models_per_s": round(args.keys / seconds),
                              "vs_bare_read": round(bare / seconds, 3)}))

        with ChangelogReader(bootstrap, batch_size=args.batch_size) as reader:
            started = time.perf_counter()
            n = sum(len(batch) for batch in reader.batches(topic, 0))
            seconds = time.perf_counter() - started
        assert n == args.records, (n, args.records)
        print(json.dumps({**common, "step": "ChangelogReader.batches", "seconds": round(seconds, 3),
                          "records_per_s": round(n / seconds)}))


if __name__ == "__main__":
    main()
