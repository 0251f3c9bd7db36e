"""``oml bench speed``: microseconds per event for ``predict_one`` + ``learn_one``.

Two synthetic binary streams per dimension ``d`` (docs/algorithms.md, "Timing"):

- ``teacher``: x ~ N(0, I), label 1 when ``w·x + 0.1·noise > 0`` for a fixed random ``w`` (the
  learner soon agrees with the teacher, so few events update the model);
- ``random``: the same x with labels drawn at random, so almost every event updates (the worst
  case for learners that only work on a margin violation).

Features arrive as ready-made dicts named ``f0 … f{d-1}``, as the service would hand them over.
One repeat times a fresh model over all events (one ``perf_counter_ns`` bracket around the
loop, the garbage collector paused as :mod:`timeit` does); the figure is the median over
repeats, and repeats of different learners are interleaved so that a slow spell on a shared
machine does not land on one learner only.

If a learner's class has a bank of its own (``make_bank`` overridden: the dense, many-models
path of :class:`oml.bank.Bank` that the service runs), the bank is timed too, as separate rows:
one model fed one event per stage (``stage 1``), and ``W`` models fed one event each per stage
(``stage W``, the service's case when a batch spans many keys).  A bank is given the events as a
numpy matrix (columns in feature order) and no dicts; the time per event is the time per stage
divided by its size.
"""

from __future__ import annotations

import gc
import inspect
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from oml.bank import bank_for
from oml.bench.contenders import describe
from oml.learner import Learner

DATA_KINDS = ("teacher", "random")
TEACHER_NOISE = 0.1
DEFAULT_STAGES = (100,)
STAT_KEYS = {"median": "us_per_event", "min": "us_per_event_min"}


@dataclass
class Stream:
    kind: str
    d: int
    xs: list[dict[str, float]]
    X: np.ndarray
    y: list[int]


def make_stream(kind: str, d: int, n: int, seed: int = 0) -> Stream:
    """``n`` events of dimension ``d``; see the module docstring.

    >>> s = make_stream("teacher", 3, 5)
    >>> len(s.xs), sorted(s.xs[0]), set(s.y) <= {0, 1}
    (5, ['f0', 'f1', 'f2'], True)
    """
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; known: {', '.join(DATA_KINDS)}")
    rng = np.random.default_rng([seed, d])
    X = rng.standard_normal((n, d))
    if kind == "teacher":
        w = rng.standard_normal(d)
        y = (X @ w + TEACHER_NOISE * rng.standard_normal(n) > 0).astype(int)
    else:
        y = rng.integers(0, 2, n)
    names = [f"f{j}" for j in range(d)]
    xs = [dict(zip(names, row, strict=True)) for row in X.tolist()]
    return Stream(kind=kind, d=d, xs=xs, X=X, y=y.tolist())


@dataclass
class Timed:
    """A way to time one learner over a stream.

    ``prepare(stream)`` builds what ``run`` works on (a fresh model, or a bank with its rows);
    it is not timed.  ``run(prepared, stream)`` is timed and returns how many events it did.
    """

    label: str
    prepare: Callable[[Stream], Any]
    run: Callable[[Any, Stream], int]
    kind: str  # "learner" or "baseline"
    path: str = "dict"


def run_dicts(model: Any, s: Stream) -> int:
    predict, learn = model.predict_one, model.learn_one
    for x, y in zip(s.xs, s.y, strict=True):
        predict(x)
        learn(x, y)
    return len(s.y)


def has_own_bank(cls: type) -> bool:
    """Whether ``cls`` brings a bank of its own rather than the default loop over models."""
    own = inspect.getattr_static(cls, "make_bank", None)
    return own is not None and own is not inspect.getattr_static(Learner, "make_bank")


def bank_timer(label: str, make: Callable[[], Any], size: int) -> Timed:
    """Time ``size`` models of a bank, each given one event per stage."""

    def prepare(s: Stream) -> tuple[Any, np.ndarray]:
        template = make()
        bank = bank_for(template)
        rows = np.array([bank.add() for _ in range(size)], dtype=np.intp)
        cols = bank.columns([f"f{j}" for j in range(s.d)])
        if not np.array_equal(cols, np.arange(s.d)):
            raise RuntimeError(f"{label}: a new bank numbered its columns {cols.tolist()}")
        return bank, rows

    def run(prepared: tuple[Any, np.ndarray], s: Stream) -> int:
        bank, rows = prepared
        predict, learn = bank.predict, bank.learn
        done = len(s.y) // size * size
        for start in range(0, done, size):
            X = s.X[start : start + size]
            y = s.y[start : start + size]
            predict(rows, X)
            learn(rows, X, y)
        return done

    return Timed(f"{label} [bank, stage {size}]", prepare, run, "learner", path=f"bank{size}")


def timed_learners(
    algorithms: Sequence[tuple[str, dict[str, Any]]],
    registry: Any,
    river: bool = True,
    stages: Sequence[int] = DEFAULT_STAGES,
) -> list[Timed]:
    out = []
    for name, params in algorithms:
        registry.create(name, params)  # fail now on a bad name or parameter
        label = describe(name, params)

        def make(name: str = name, params: dict[str, Any] = params) -> Any:
            return registry.create(name, params)

        def fresh(s: Stream, make: Callable[[], Any] = make) -> Any:
            return make()

        out.append(Timed(label, fresh, run_dicts, "learner"))
        if has_own_bank(registry.get(name)):
            out.extend(bank_timer(label, make, w) for w in stages)
    if river:
        from river import linear_model

        def river_pa(s: Stream) -> Any:
            return linear_model.PAClassifier()

        out.append(Timed("river PAClassifier", river_pa, run_dicts, "baseline"))
    return out


def time_once(t: Timed, s: Stream) -> float:
    """µs per event for a fresh model (or bank) over the stream."""
    prepared = t.prepare(s)
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        done = t.run(prepared, s)
        elapsed = time.perf_counter_ns() - start
    finally:
        if was_enabled:
            gc.enable()
    return elapsed / max(done, 1) / 1000.0


def measure(
    timed: Sequence[Timed],
    dims: Sequence[int],
    *,
    events: int,
    repeats: int,
    kinds: Sequence[str] = DATA_KINDS,
    seed: int = 0,
    progress: Callable[[int], Any] | None = None,
) -> list[dict[str, Any]]:
    """Median µs/event of every learner on every (d, kind) stream."""
    rows = []
    for d in dims:
        for kind in kinds:
            stream = make_stream(kind, d, events, seed)
            samples: dict[str, list[float]] = {t.label: [] for t in timed}
            for _ in range(repeats):
                for t in timed:  # interleaved, see the module docstring
                    samples[t.label].append(time_once(t, stream))
                    if progress is not None:
                        progress(1)
            for t in timed:
                rows.append(
                    {
                        "learner": t.label,
                        "kind": t.kind,
                        "path": t.path,
                        "d": d,
                        "data": kind,
                        "us_per_event": float(np.median(samples[t.label])),
                        "us_per_event_min": float(np.min(samples[t.label])),
                        "repeats_us": [round(v, 3) for v in samples[t.label]],
                    }
                )
    return rows


def check_speed_targets(
    rows: list[dict[str, Any]], baseline: str, stat: str = "median"
) -> list[dict[str, Any]]:
    """At d=4 no slower than ``baseline``; at d=100 at least 5 times faster (every learner row).

    The targets are about ``predict_one`` + ``learn_one``; bank rows are shown beside them but
    not held to them.
    """
    key = STAT_KEYS[stat]
    base = {(r["d"], r["data"]): r[key] for r in rows if r["learner"] == baseline}
    out = []
    for r in rows:
        if r["kind"] != "learner" or (r["d"], r["data"]) not in base or r["d"] not in (4, 100):
            continue
        if r["path"] != "dict":
            continue
        speedup = base[(r["d"], r["data"])] / r[key]
        need = 1.0 if r["d"] == 4 else 5.0
        out.append(
            {
                "learner": r["learner"],
                "d": r["d"],
                "data": r["data"],
                "speedup_vs_baseline": round(speedup, 2),
                "target": f">= {need:g}x {baseline}",
                "status": "pass" if speedup >= need else "fail",
            }
        )
    return out


def format_speed(report: dict[str, Any]) -> str:
    rows = report["results"]
    keys = sorted({(r["d"], r["data"]) for r in rows}, key=lambda k: (k[0], DATA_KINDS.index(k[1])))
    labels = list(dict.fromkeys(r["learner"] for r in rows))
    stat = report["protocol"].get("table_statistic", "median")
    value = {(r["learner"], r["d"], r["data"]): r[STAT_KEYS[stat]] for r in rows}
    base = report["baseline"]
    header = [f"µs/event ({stat})", *(f"d={d} {kind}" for d, kind in keys)]
    lines = [header]
    for label in labels:
        cells = [label]
        for d, kind in keys:
            v = value.get((label, d, kind))
            b = value.get((base, d, kind))
            cell = "-" if v is None else f"{v:.1f}"
            if v is not None and b is not None and label != base:
                cell += f" ({b / v:.1f}x)"
            cells.append(cell)
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = [
        f"predict_one + learn_one per event; {report['protocol']['events']} events, {stat} of "
        f"{report['protocol']['repeats']} repeats; (Nx) = speed-up over {base}",
        "",
    ]
    for i, line in enumerate(lines):
        first = line[0].ljust(widths[0])
        out.append(
            "  ".join([first, *(c.rjust(w) for c, w in zip(line[1:], widths[1:], strict=True))])
        )
        if i == 0:
            out.append("  ".join("-" * w for w in widths))
    if report.get("checks"):
        out += ["", "targets (d=4: no slower than the baseline; d=100: at least 5x faster):"]
        for c in report["checks"]:
            out.append(
                f"  [{c['status']:>4}] {c['learner']} d={c['d']} {c['data']}: "
                f"{c['speedup_vs_baseline']}x"
            )
    return "\n".join(out)


DIAGONAL_PARAMS = (("covariance", "diagonal"), ("diagonal", True), ("full", False))


def default_algorithms(registry: Any) -> list[str]:
    """``pa`` and ``scw`` with a diagonal covariance, spelt the way scw's parameters spell it."""
    from oml.plugins import parameters

    out = ["pa"]
    try:
        accepted = parameters(registry.get("scw"))
    except LookupError:
        return out
    for key, value in DIAGONAL_PARAMS:
        if key in accepted:
            return [*out, f"scw:{key}={value!r}"]
    return [*out, "scw"]
