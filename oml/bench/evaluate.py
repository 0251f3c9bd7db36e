"""``oml bench learners``: one data set, several contenders, one report.

:func:`evaluate` builds the contenders named by a :class:`BenchConfig`, runs each through the
same prequential protocol and returns the report as a plain dict (what the JSON file holds).
Printing and writing files is left to :mod:`oml.bench.report`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from oml.bench import contenders as cont
from oml.bench import datasets, streams
from oml.bench.metrics import (
    RECOVERY_TOLERANCE,
    WINDOW,
    classification_metrics,
    correct,
    positive_class,
    recovery_time,
    regression_metrics,
    reliability,
    running_score,
    windowed_accuracy,
)
from oml.bench.prequential import Trace, prequential, shuffle_order
from oml.bench.targets import check_targets
from oml.learner import plain

SCHEMA_VERSION = 2
"""2: ``ece`` and ``reliability`` per pass, ``recovery`` and ``windowed`` for the drift
streams, ``dataset.stream`` / ``drift_points``."""
CURVE_POINTS_PER_PASS = 100
WINDOWED_POINTS_PER_PASS = 200


@dataclass
class BenchConfig:
    """Everything one ``oml bench learners`` run depends on."""

    dataset: str | None = "banknote"
    csv: Path | None = None
    target: str | None = None
    task: str = "auto"
    data_dir: Path | None = None
    cache_dir: Path | None = None
    download: bool = True
    passes: int = 3
    seed: int = 0
    delay: int = 0
    algorithms: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    params: list[tuple[str, str, Any]] = field(default_factory=list)
    baselines: bool = True
    scaled: bool = True
    """Also run each learner behind River's StandardScaler."""
    published: bool = True


def load_dataset(config: BenchConfig) -> datasets.Dataset:
    if config.csv is not None:
        if not config.target:
            raise datasets.DatasetError("--csv needs --target COLUMN")
        return datasets.load_csv(config.csv, config.target, task=config.task)  # type: ignore[arg-type]
    if config.dataset is None:
        raise datasets.DatasetError("no data set: give --dataset NAME or --csv PATH")
    return datasets.load(
        config.dataset,
        data_dir=config.data_dir,
        cache_dir=config.cache_dir,
        download=config.download,
        seed=config.seed,
    )


def build_contenders(
    config: BenchConfig, ds: datasets.Dataset, registry: Any, warn: Callable[[str], Any]
) -> list[cont.Contender]:
    """Registered algorithms (the defaults for the task if none named), then the baselines."""
    explicit = bool(config.algorithms)
    wanted = config.algorithms or [(n, {}) for n in cont.DEFAULT_ALGORITHMS[ds.task]]
    out: list[cont.Contender] = []
    for name, params in wanted:
        merged = {**{k: v for a, k, v in config.params if a == name}, **params}
        try:
            c = cont.registered(name, merged, registry)
        except LookupError as exc:
            if explicit:
                raise
            warn(f"skipping default algorithm {name!r}: {exc}")
            continue
        check_task(name, c.make(), ds)
        taken = {o.label for o in out}
        if c.label in taken:  # the same learner twice: keep the rows apart
            c.label = next(
                f"{c.label} #{k}" for k in range(2, len(out) + 3) if f"{c.label} #{k}" not in taken
            )
        out.append(c)
    if config.scaled:
        out.extend([cont.scaled(c) for c in out])
    unused = {a for a, _, _ in config.params} - {name for name, _ in wanted}
    if unused:
        raise ValueError(f"--param given for {', '.join(sorted(unused))}, which is not being run")
    if config.baselines:
        out.extend(cont.baselines(ds))
    return out


def check_task(name: str, model: Any, ds: datasets.Dataset) -> None:
    """A regressor on a classification data set (or the reverse) is a usage error."""
    from river import base

    kind = (
        "regression"
        if isinstance(model, base.Regressor)
        else "classification"
        if isinstance(model, base.Classifier)
        else None
    )
    if kind is not None and kind != ds.task:
        raise ValueError(f"algorithm {name!r} does {kind}; {ds.name} is a {ds.task} data set")


def pass_metrics(
    trace: Trace, ds: datasets.Dataset, drifts: list[int] | None = None
) -> list[dict[str, Any]]:
    """Each pass's metrics; with ``drifts`` (trace positions), the recovery after each drift
    point of the pass (:func:`recoveries`)."""
    rows = []
    hits = correct(trace.y_true, trace.y_pred) if drifts else None
    for p in range(trace.passes):
        s = trace.pass_slice(p)
        if ds.task == "regression":
            m: dict[str, Any] = regression_metrics(trace.y_true[s], trace.y_pred[s])
        else:
            proba = trace.proba[s] if trace.proba is not None else None
            m = dict(
                classification_metrics(
                    trace.y_true[s], trace.y_pred[s], classes=ds.classes, proba=proba
                )
            )
            if proba is not None:
                m["reliability"] = reliability(trace.y_true[s], proba)
        if hits is not None and drifts:
            m["recovery"] = recoveries(hits, drifts, p * trace.n, (p + 1) * trace.n)
        ns = trace.step_ns[s]
        m["us_per_event"] = float(ns.mean()) / 1000.0
        m["us_per_event_p50"] = float(np.median(ns)) / 1000.0
        rows.append({"pass": p + 1, **m})
    return rows


def recoveries(hits: np.ndarray, drifts: list[int], start: int, stop: int) -> list[dict]:
    """Recovery after each drift point in ``[start, stop)``, each bounded by the next one."""
    out = []
    for i, d in enumerate(drifts):
        if not start <= d < stop:
            continue
        end = drifts[i + 1] if i + 1 < len(drifts) else len(hits)
        before = float(hits[max(0, d - WINDOW) : d].mean())
        out.append(
            {
                "event": d + 1,
                "level_before": round(before, 4),
                "events_to_recover": recovery_time(hits, d, end=end),
            }
        )
    return out


def windowed(trace: Trace) -> dict[str, Any]:
    """Windowed accuracy (:data:`~oml.bench.metrics.WINDOW` events) over the whole run, a few
    hundred points per pass, from the first full window on."""
    acc = windowed_accuracy(correct(trace.y_true, trace.y_pred))
    total = len(acc)
    start = min(WINDOW, total) - 1
    idx = np.unique(np.linspace(start, total - 1, WINDOWED_POINTS_PER_PASS * trace.passes)
                    .astype(int))  # fmt: skip
    return {
        "window": WINDOW,
        "events": [int(i + 1) for i in idx],
        "accuracy": [round(float(acc[i]), 4) for i in idx],
    }


def curve(trace: Trace, task: str) -> dict[str, list[Any]]:
    """Score within each pass (accuracy, or MAE) against events seen, a few points per pass.

    Each pass's curve starts after its first 5% of events (at least 10), where a running
    score over a handful of events says little.
    """
    events: list[int] = []
    values: list[float] = []
    start = min(trace.n - 1, max(9, trace.n // 20))
    points = min(trace.n - start, CURVE_POINTS_PER_PASS)
    idx = np.unique(np.linspace(start, trace.n - 1, points).astype(int))
    for p in range(trace.passes):
        s = trace.pass_slice(p)
        score = running_score(trace.y_true[s], trace.y_pred[s], task)
        events.extend(int(p * trace.n + i + 1) for i in idx)
        values.extend(round(float(score[i]), 6) for i in idx)
    return {"events": events, "value": values}


def cold_start(ds: datasets.Dataset, order: np.ndarray, delay: int) -> int:
    """How many leading events are predicted before a label of every class has been learned
    (regression: before any label has).  Learners may differ there by design.

    >>> ds = datasets.from_rows("t", ["a", "y"], [["0", "x"], ["1", "x"], ["2", "z"]], target="y")
    >>> cold_start(ds, np.array([1, 0, 2]), 0), cold_start(ds, np.array([1, 0, 2]), 2)
    (3, 5)
    """
    wanted = set(ds.classes) if ds.task == "classification" else None
    seen: set[Any] = set()
    for t, i in enumerate(order.tolist()):
        seen.add(ds.y[i])
        if wanted is None or seen >= wanted:
            return t + 1 + delay
    return len(order) + delay


def predictions_digest(y_pred: list[Any]) -> str:
    """sha256 of the prediction sequence: equal digests mean identical predictions."""

    def jsonable(o: Any) -> Any:  # a numpy scalar as its value, anything else JSON lacks as str
        value = plain(o)
        return str(o) if value is o else value

    return hashlib.sha256(json.dumps(y_pred, default=jsonable).encode()).hexdigest()


def _plain(value: Any) -> Any:
    """A parameter value JSON can hold (its repr if nothing better)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return repr(value)


def environment() -> dict[str, Any]:
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
    }
    for dist in ("oml-stream", "numpy", "river", "scikit-learn"):
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = None
    return env


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def evaluate(
    config: BenchConfig,
    *,
    registry: Any = None,
    ds: datasets.Dataset | None = None,
    contenders: list[cont.Contender] | None = None,
    progress: Callable[[str, int], Any] | None = None,
    warn: Callable[[str], Any] = lambda msg: print(f"warning: {msg}", file=sys.stderr),
    command: str = "",
) -> dict[str, Any]:
    """Run every contender over the data set; the report, ready for JSON.

    ``ds`` and ``contenders`` are built from ``config`` (and ``registry``, by default the
    service's) unless given.  ``progress(label, k)`` is told how many events each contender has
    done.
    """
    ds = ds if ds is not None else load_dataset(config)
    if contenders is None:
        if registry is None:
            from oml.plugins import default_registry

            registry = default_registry()
        contenders = build_contenders(config, ds, registry, warn)
    order = np.arange(ds.n) if ds.stream else shuffle_order(ds.n, config.seed)
    drifts = streams.drift_points(ds, config.passes) if ds.stream else []

    results: list[dict[str, Any]] = []
    predictions: dict[str, list[Any]] = {}
    for c in contenders:
        tick = None if progress is None else (lambda k, label=c.label: progress(label, k))
        trace = prequential(
            c.make(),
            ds.X,
            ds.y,
            order=order,
            passes=config.passes,
            delay=config.delay,
            proba=ds.task == "classification",
            progress=tick,
        )
        predictions[c.label] = trace.y_pred
        results.append(
            {
                "label": c.label,
                "kind": c.kind,
                "algorithm": c.algorithm or None,
                "params": c.params,
                "resolved_params": {k: _plain(v) for k, v in c.resolved.items()},
                "note": c.note,
                "passes": pass_metrics(trace, ds, drifts),
                "refused": trace.refused,
                "predictions_sha256": predictions_digest(trace.y_pred),
                "curve": curve(trace, ds.task),
            }
        )
        if ds.stream and ds.task == "classification":
            results[-1]["windowed"] = windowed(trace)

    published = []
    if config.published and config.csv is None and ds.name in cont.PUBLISHED:
        ref = cont.PUBLISHED[ds.name]
        published.append(
            {
                "label": ref["label"],
                "kind": "published",
                "note": ref["note"],
                "accuracy_by_pass": [
                    {"pass": p, "accuracy": a} for p, a in ref["accuracy_by_pass"].items()
                ],
            }
        )

    classes = ds.classes
    report: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": command,
        "dataset": {
            "name": ds.name,
            "source": ds.source,
            "sha256": ds.sha256,
            "rows": ds.n,
            "features": ds.features,
            "target": ds.target,
            "task": ds.task,
            "classes": classes,
            "positive_class": positive_class(classes) if len(classes) == 2 else None,
            "stream": ds.stream,
            "drifts": list(ds.drifts),
            "restart_is_drift": ds.restart_is_drift,
        },
        "protocol": {
            "kind": "prequential (test-then-train)",
            "passes": config.passes,
            "seed": config.seed,
            "label_delay": config.delay,
            "order": "stream order, every pass" if ds.stream else "shuffled once",
            "order_head": order[:8].tolist(),
            "drift_points": [d + 1 for d in drifts],
            "window": WINDOW,
            "recovery_tolerance": RECOVERY_TOLERANCE,
            "cold_start_events": cold_start(ds, order, config.delay),
            "timing": "predict_one + learn_one per event, time.perf_counter_ns",
        },
        "environment": environment(),
        "results": results,
        "published": published,
    }
    report["checks"] = check_targets(report, config, predictions)
    return report
