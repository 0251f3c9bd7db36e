"""A data set replayed as the service's input: keyed events, their feedback some events later,
written to the input topic (``oml produce``, ``oml demo`` and the service tests use it)."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Producer

from oml.codecs.events import Event, EventEncoder
from oml.config import Config
from oml.kafka import clients

__all__ = ["dataset_events", "produce_events"]


def dataset_events(
    rows: Sequence[dict[str, float]],
    labels: Sequence[Any],
    *,
    n_keys: int = 1,
    delay: int = 10,
    passes: int = 1,
    seed: int | None = 0,
    feedback: bool = True,
    start_ms: int | None = None,
) -> Iterator[Event]:
    """The rows as a keyed event stream: each row an unlabeled event, and ``delay`` events
    later its feedback (same event id and key, with the label).

    Row ``i`` of pass ``p`` is event ``p-i`` of key ``key-{i % n_keys}``; the order within a
    pass is ``numpy.random.default_rng(seed).permutation`` (file order if ``seed`` is None).
    Event times start at ``start_ms`` (default: now) and advance 1 ms per event.

    >>> [(e.event_id, e.label) for e in dataset_events([{"x": 1.0}, {"x": 2.0}], [0, 1], delay=1,
    ...                                                 seed=None)]
    [('0-0', None), ('0-1', None), ('0-0', 0), ('0-1', 1)]
    >>> abs(next(dataset_events([{"x": 1.0}], [0])).timestamp - time.time() * 1000) < 60_000
    True
    """
    import numpy as np

    n = len(rows)
    order = list(range(n)) if seed is None else np.random.default_rng(seed).permutation(n).tolist()
    pending: list[Event] = []
    clock = int(time.time() * 1000) if start_ms is None else start_ms
    for p in range(passes):
        for i in order:
            key = f"key-{i % n_keys}"
            event_id = f"{p}-{i}"
            clock += 1
            yield Event(event_id, key, dict(rows[i]), None, clock)
            if feedback:
                pending.append(Event(event_id, key, None, labels[i], clock))
                if len(pending) > delay:
                    yield pending.pop(0)
    yield from pending


def produce_events(config: Config, bootstrap: str, events: Iterator[Event],
                   rate: float | None = None) -> int:
    """Write events to the input topic, keyed by model key; returns how many."""
    encoder = EventEncoder.from_config(config)
    producer = Producer({
        **clients.producer_config(bootstrap, config.kafka.librdkafka, client_id="oml-produce"),
        "linger.ms": 5, "partitioner": "murmur2_random",
    })
    sent = 0
    started = time.monotonic()
    for event in events:
        producer.produce(config.topics.input, value=encoder(event), key=event.key.encode())
        sent += 1
        if sent % 10_000 == 0:
            producer.poll(0)
        if rate:
            ahead = sent / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    producer.flush(60)
    return sent
