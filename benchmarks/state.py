"""Model state in and out of the store, per model (not a test: run it by hand).

    python benchmarks/state.py --keys 20000 --repeat 5 --out benchmarks/state/state.jsonl

For each learner, ``--keys`` models (``--features`` features, binary, trained on two random
stages) are marked learned and exported as a commit exports them (``ModelStore.take_changes``:
state bytes with the service's bookkeeping), then loaded into a fresh store as restore loads
them (``ModelStore.load`` per key, and ``ModelStore.load_many`` for all, restore's path, where
the version has it).  Prints, and appends to ``--out``, one JSON line per learner
with the median microseconds per model of ``--repeat`` rounds.  It only uses the store's public
methods, so ``PYTHONPATH=<another checkout>`` measures another version the same way.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

from oml.plugins import default_registry
from oml.state.models import ModelStore


def _trained(algorithm: str, keys: int, d: int) -> ModelStore:
    # (its own, not oml.bench.restore's: older checkouts, measured through PYTHONPATH, lack it)
    registry = default_registry()
    store = ModelStore(registry.create(algorithm), registry)
    rows = store.rows_for_partitions([i % 4 for i in range(keys)], [f"k{i}" for i in range(keys)])
    store.bank.columns([f"f{j}" for j in range(d)])
    rng = np.random.default_rng(0)
    regressor = algorithm.endswith("regressor")
    for _ in range(2):
        X = rng.normal(size=(keys, d))
        y = X.sum(axis=1)
        store.bank.learn(rows, X, y.tolist() if regressor else (y > 0).tolist())
    store.learned_offset[rows] = np.arange(keys)
    return store


def measure(algorithm: str, keys: int, d: int, repeat: int) -> dict:
    store = _trained(algorithm, keys, d)
    rows = np.fromiter(store.rows.values(), np.intp)
    export, load, load_many = [], [], []
    for _ in range(repeat):
        store.mark_learned(rows)
        started = time.perf_counter()
        changes = store.take_changes()
        export.append((time.perf_counter() - started) / keys * 1e6)
        registry = default_registry()
        fresh = ModelStore(registry.create(algorithm), registry)
        started = time.perf_counter()
        for partition, key, value, _ in changes:
            fresh.load(partition, key, value)
        load.append((time.perf_counter() - started) / keys * 1e6)
        if hasattr(fresh, "load_many"):  # restore's path since it has one
            bulk = ModelStore(registry.create(algorithm), registry)
            started = time.perf_counter()
            bulk.load_many(0, [(key, value) for _, key, value, _ in changes])
            load_many.append((time.perf_counter() - started) / keys * 1e6)
    extra = {} if not load_many else {
        "load_many_us_per_model": round(float(np.median(load_many)), 2)}
    return {"algorithm": algorithm, "keys": keys, "features": d, "repeat": repeat,
            "state_bytes": len(changes[0][2]),
            "export_us_per_model": round(float(np.median(export)), 2),
            "load_us_per_model": round(float(np.median(load)), 2), **extra}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--keys", type=int, default=20_000)
    p.add_argument("--features", type=int, default=4)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--algorithms", nargs="+", default=["pa", "scw", "pa-regressor"])
    p.add_argument("--label", default=None, help="what is measured (default: git describe)")
    p.add_argument("--out", type=Path, default=None, help="append the JSON lines here")
    args = p.parse_args()
    import oml

    label = args.label or subprocess.run(
        ["git", "-C", str(Path(oml.__file__).parent), "describe", "--always", "--dirty"],
        capture_output=True, text=True, check=False).stdout.strip()
    for algorithm in args.algorithms:
        line = json.dumps({"version": label, **measure(algorithm, args.keys, args.features,
                                                       args.repeat)})
        print(line, flush=True)
        if args.out is not None:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            with args.out.open("a") as f:
                f.write(line + "\n")


if __name__ == "__main__":
    main()
