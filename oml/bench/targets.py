"""The figures the built-in learners are held to, checked on a finished report.

They hold for the default protocol only (at least 3 passes, seed 0, no label delay, default
parameters), so under any other settings a target is reported as ``n/a`` with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Report = dict[str, Any]


@dataclass
class Seen:
    """What a check may look at: the result rows by label, and their predictions in full."""

    rows: dict[str, dict[str, Any]]
    predictions: dict[str, list[Any]]
    cold_start: int  # leading events predicted before every class had been learned


@dataclass(frozen=True)
class Target:
    dataset: str
    text: str
    rows: tuple[str, ...]  # result labels the check needs
    check: Callable[[Seen], tuple[bool, str]]


def _accuracy(row: dict[str, Any], p: int) -> float:
    return float(row["passes"][p - 1]["accuracy"])


def _scw_banknote(seen: Seen) -> tuple[bool, str]:
    a2, a3 = _accuracy(seen.rows["scw"], 2), _accuracy(seen.rows["scw"], 3)
    return min(a2, a3) >= 0.985, f"pass 2 {a2:.4f}, pass 3 {a3:.4f}"


def _pa_is_river(seen: Seen) -> tuple[bool, str]:
    """Same prediction on every event once both models have been given every class.

    Before that the two may differ by design: with no class yet, ``pa`` predicts nothing and
    River's zero model says ``False``; with one class, ``pa`` predicts that class.
    """
    ours, river = seen.predictions["pa"], seen.predictions["river PAClassifier"]
    differ = [i for i, (a, b) in enumerate(zip(ours, river, strict=True)) if a != b]
    late = [i for i in differ if i >= seen.cold_start]
    cold = sum(1 for i in differ if i < seen.cold_start)
    accs = " / ".join(f"{p['accuracy']:.4f}" for p in seen.rows["pa"]["passes"])
    river_accs = " / ".join(
        f"{p['accuracy']:.4f}" for p in seen.rows["river PAClassifier"]["passes"]
    )
    if late:
        return False, f"{len(late)} of {len(ours)} predictions differ, the first at event {late[0]}"
    return True, (
        f"identical on all {len(ours) - seen.cold_start} events after the first "
        f"{seen.cold_start} (cold start, {cold} differ{'s' if cold == 1 else ''} there); "
        f"accuracy pa {accs}, River {river_accs}"
    )


def _scw_iris(seen: Seen) -> tuple[bool, str]:
    a3 = _accuracy(seen.rows["scw"], 3)
    return a3 >= 0.96, f"pass 3 {a3:.4f}"


TARGETS = [
    Target("banknote", "scw accuracy >= 0.985 in passes 2 and 3", ("scw",), _scw_banknote),
    Target(
        "banknote",
        "pa predicts exactly as River PAClassifier",
        ("pa", "river PAClassifier"),
        _pa_is_river,
    ),
    Target("iris", "scw accuracy >= 0.96 by pass 3", ("scw",), _scw_iris),
]


def check_targets(
    report: Report, config: Any, predictions: dict[str, list[Any]]
) -> list[dict[str, str]]:
    """One entry per target of this data set: ``pass``, ``fail`` or ``n/a`` and what was seen."""
    name = report["dataset"]["name"]
    mine = [t for t in TARGETS if t.dataset == name]
    if not mine or getattr(config, "csv", None) is not None:
        return []
    proto = report["protocol"]
    off_default = [f"passes={proto['passes']}"] if proto["passes"] < 3 else []
    off_default += [f"{k}={proto[k]}" for k in ("seed", "label_delay") if proto[k] != 0]
    rows = {r["label"]: r for r in report["results"]}
    out = []
    for t in mine:
        if off_default:
            out.append({"target": t.text, "status": "n/a", "measured": ", ".join(off_default)})
            continue
        missing = [r for r in t.rows if r not in rows]
        if missing:
            out.append(
                {"target": t.text, "status": "n/a", "measured": f"not run: {', '.join(missing)}"}
            )
            continue
        seen = Seen(rows, predictions, report["protocol"]["cold_start_events"])
        ok, measured = t.check(seen)
        out.append({"target": t.text, "status": "pass" if ok else "fail", "measured": measured})
    return out
