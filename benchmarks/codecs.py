"""Codec throughput: events/s for batches of typical 4-feature events (not part of the tests).

    .venv/bin/python benchmarks/codecs.py [--batch 10000] [--repeat 30] [--out FILE]
        [--only SUBSTRING] [--label TEXT]

Prints one row per case (best and median of ``--repeat`` runs) and, with ``--out``, writes the
rows as JSON (with ``--label``, e.g. the commit measured).  ``--only decode`` runs the cases
whose name contains "decode".  To compare two versions of oml, run this same script with
``PYTHONPATH`` pointing at each checkout in turn.

The two baseline rows are what the decoders are up against: parsing the same bytes into plain
dicts with the standard library and with msgspec, doing nothing else.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any

import msgspec
import numpy as np

from oml.codecs.events import AvroEventDecoder, Event, EventEncoder, JsonEventDecoder
from oml.codecs.outputs import MetricsCodec, PredictionCodec


def typical_events(n: int, labelled_every: int = 0) -> list[Event]:
    """Events to score with 4 named features; every ``labelled_every``-th one is feedback."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).round(6).tolist()
    out = []
    for i in range(n):
        if labelled_every and i % labelled_every == 0:
            out.append(Event(f"ev-{i - 1}", f"user-{i % 1000}", label=bool(i % 3)))
        else:
            a, b, c, d = x[i]
            features = {"amount": a, "age": b, "score": c, "n_items": d}
            out.append(Event(f"ev-{i}", f"user-{i % 1000}", features, None, 1_700_000_000_000 + i))
    return out


def measure(fn: Callable[[], Any], n: int, repeat: int) -> dict[str, float]:
    fn()  # warm up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    best, median = min(times), statistics.median(times)
    return {
        "best_ms": round(best * 1e3, 3),
        "median_ms": round(median * 1e3, 3),
        "events_per_s_best": round(n / best),
        "events_per_s_median": round(n / median),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--out", default=None, help="write the rows to this JSON file")
    parser.add_argument("--only", default="", help="run only the cases whose name has this")
    parser.add_argument("--label", default="", help="stored with the rows (e.g. a commit)")
    args = parser.parse_args()
    n = args.batch

    events = typical_events(n)
    mixed = typical_events(n, labelled_every=2)
    json_values = EventEncoder().encode_batch(events)
    mixed_values = EventEncoder().encode_batch(mixed)
    as_lists = [
        Event(e.event_id, e.key, list(e.features.values()), None, e.timestamp)  # type: ignore[union-attr]
        for e in events
    ]
    list_values = EventEncoder().encode_batch(as_lists)
    avro_values = EventEncoder(format="avro").encode_batch(events)
    one_pct_bad = list(json_values)
    for i in range(0, n, 100):
        one_pct_bad[i] = b'{"event_id": "x", "key": "k", "features": {"amount": NaN}}'

    rng = np.random.default_rng(1)
    ids = [e.event_id for e in events]
    keys = [e.key for e in events]
    p = rng.random(n)
    prediction_kw: dict[str, Any] = {
        "classes": [False, True],
        "proba": np.column_stack([1 - p, p]),
        "score": rng.normal(size=n),
        "n_updates": rng.integers(0, 10_000, n),
        "event_timestamps": np.arange(n, dtype=np.int64) + 1_700_000_000_000,
        "processed_timestamp": 1_700_000_001_000,
        "algorithm": "scw",
    }
    labels = (p > 0.5).tolist()
    json_dec, avro_dec = JsonEventDecoder(), AvroEventDecoder()
    json_pred, avro_pred = PredictionCodec("json"), PredictionCodec("avro")
    metrics = MetricsCodec("json")
    plain = msgspec.json.Decoder()

    cases: list[tuple[str, Callable[[], Any], int]] = [
        ("baseline: json.loads per message", lambda: [json.loads(v) for v in json_values], 10),
        ("baseline: msgspec to dicts", lambda: list(map(plain.decode, json_values)), 0),
        ("json decode_batch, events to score", lambda: json_dec.decode_batch(json_values), 0),
        ("json decode_batch, half feedback", lambda: json_dec.decode_batch(mixed_values), 0),
        ("json decode_batch, list features", lambda: json_dec.decode_batch(list_values), 0),
        ("json decode_batch, 1% bad", lambda: json_dec.decode_batch(one_pct_bad), 0),
        ("avro decode_batch, events to score", lambda: avro_dec.decode_batch(avro_values), 5),
        ("json encode events", lambda: EventEncoder().encode_batch(events), 0),
        (
            "json encode predictions (proba+score)",
            lambda: json_pred.encode_batch(ids, keys, labels, **prediction_kw),
            0,
        ),
        (
            "avro encode predictions (proba+score)",
            lambda: avro_pred.encode_batch(ids, keys, labels, **prediction_kw),
            5,
        ),
        (
            "json encode metrics (one per key)",
            lambda: metrics.encode_batch(
                keys, np.arange(n), window=1000, timestamp=1, algorithm="scw", accuracy=p
            ),
            0,
        ),
    ]
    rows = []
    print(f"batch of {n} events, {platform.python_implementation()} {platform.python_version()}")
    print(f"{'case':42s} {'best ms':>9s} {'events/s (best)':>16s} {'events/s (median)':>18s}")
    for name, fn, repeat in cases:
        if args.only not in name:
            continue
        row = {"case": name, "batch": n, **measure(fn, n, repeat or args.repeat)}
        rows.append(row)
        print(
            f"{name:42s} {row['best_ms']:9.2f} {row['events_per_s_best']:16,d}"
            f" {row['events_per_s_median']:18,d}"
        )
    if args.out:
        with open(args.out, "w") as fh:
            meta = {"python": platform.python_version(), "label": args.label}
            json.dump({**meta, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
