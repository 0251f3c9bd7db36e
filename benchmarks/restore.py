"""How fast the restore reader reads a changelog partition (not a test: run it by hand).

    .venv/bin/python benchmarks/restore.py --records 1000000

Fills one partition of a fresh topic with ``--records`` records (keys from a pool of
``--keys``, ``--value-bytes`` random values, lz4-compressed producer batches) on the embedded
broker, or on ``OML_BOOTSTRAP_SERVERS``, then reads it back to the end with
:meth:`ChangelogReader.read` (into a last-per-key dict) and with :meth:`ChangelogReader.batches`,
and prints records per second as one JSON line each.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
import uuid
from collections.abc import Iterator

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

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


def _fill(bootstrap: str, topic: str, records: int, keys: int, value_bytes: int) -> float:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    values = [os.urandom(value_bytes) for _ in range(1024)]  # incompressible, like model state
    started = time.perf_counter()
    for i in range(records):
        while True:
            try:
                producer.produce(
                    topic, key=b"key-%09d" % (i % keys), value=values[i % 1024], partition=0
                )
                break
            except BufferError:
                producer.poll(0.01)
        if i % 50_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    assert left == 0, f"{left} records not delivered"
    return records / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=10_000)
    args = parser.parse_args()

    with _cluster() as bootstrap:
        admin = AdminClient({"bootstrap.servers": bootstrap})
        topic = f"bench-restore-{uuid.uuid4().hex[:8]}"
        admin.create_topics([NewTopic(topic, 1, -1)])[topic].result(30)
        produce_rate = _fill(bootstrap, topic, args.records, args.keys, args.value_bytes)
        common = {"records": args.records, "value_bytes": args.value_bytes,
                  "broker": "embedded" if "OML_BOOTSTRAP_SERVERS" not in os.environ else bootstrap}
        print(json.dumps({**common, "step": "produce", "records_per_s": round(produce_rate)}))

        started = time.perf_counter()
        latest: dict[bytes | None, bytes | None] = {}
        n = 0
        with ChangelogReader(bootstrap, batch_size=args.batch_size) as reader:
            for key, value, _offset in reader.read(topic, 0):
                latest[key] = value
                n += 1
        seconds = time.perf_counter() - started
        assert n == args.records, (n, args.records)
        print(json.dumps({**common, "step": "ChangelogReader.read + last-per-key dict",
                          "seconds": round(seconds, 3), "records_per_s": round(n / seconds),
                          "keys": len(latest)}))

        with ChangelogReader(bootstrap, batch_size=args.batch_size) as reader:
            started = time.perf_counter()
            n = sum(len(batch) for batch in reader.batches(topic, 0))
            seconds = time.perf_counter() - started
        assert n == args.records, (n, args.records)
        print(json.dumps({**common, "step": "ChangelogReader.batches", "seconds": round(seconds, 3),
                          "records_per_s": round(n / seconds)}))


if __name__ == "__main__":
    main()
