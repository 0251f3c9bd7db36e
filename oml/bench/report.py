"""A bench report as a terminal table, a JSON file and a learning-curve plot."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

Report = dict[str, Any]

CLASSIFICATION_COLUMNS = [
    ("accuracy", "accuracy"),
    ("precision", "precision"),
    ("recall", "recall"),
    ("f1", "F1"),
    ("log_loss", "log loss"),
    ("ece", "ECE"),
]
REGRESSION_COLUMNS = [("mae", "MAE"), ("rmse", "RMSE")]
TIME_COLUMNS = [("us_per_event", "µs/event"), ("us_per_event_p50", "µs p50")]


def _fmt(value: Any, key: str) -> str:
    if key == "recovery":
        return format_recovery(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key.startswith("us_"):
        return f"{value:.1f}"
    return f"{value:.4f}"


def format_recovery(recovery: list[dict[str, Any]] | None) -> str:
    """Events to recover after each drift point of a pass, ``/``-separated, ``never`` for not
    recovered; ``-`` for a pass without a drift point.

    >>> format_recovery([{"events_to_recover": 700}, {"events_to_recover": None}])
    '700/never'
    """
    if not recovery:
        return "-"
    return "/".join(
        "never" if r["events_to_recover"] is None else str(r["events_to_recover"])
        for r in recovery
    )


def headline(report: Report) -> str:
    d, p = report["dataset"], report["protocol"]
    what = f"{d['rows']} rows, {len(d['features'])} features"
    if d["task"] == "classification":
        what += f", classes {d['classes']}"
        if d["positive_class"] is not None:
            what += f" (positive: {d['positive_class']})"
    else:
        what += f", regression on {d['target']!r}"
    passes = f"{p['passes']} pass" + ("es" if p["passes"] != 1 else "")
    proto = f"{passes}, seed {p['seed']}, label delay {p['label_delay']}"
    line = f"{d['name']}: {what}; prequential, {proto}"
    if d.get("stream"):
        points = ", ".join(map(str, p.get("drift_points", []))) or "none"
        line += (
            f"\nin stream order; drift points (events): {points}; recovery = events until "
            f"accuracy over {p['window']} events is within {p['recovery_tolerance']:g} of its "
            "level before the drift"
        )
    return line


def format_table(report: Report) -> str:
    """One line per contender and pass, then the published reference, then the targets."""
    task = report["dataset"]["task"]
    metric_cols = CLASSIFICATION_COLUMNS if task == "classification" else REGRESSION_COLUMNS
    cols = metric_cols + TIME_COLUMNS
    if report["protocol"].get("drift_points"):
        cols = [*metric_cols, ("recovery", "recovery"), *TIME_COLUMNS]
    lines: list[list[str]] = []
    for row in report["results"]:
        for i, p in enumerate(row["passes"]):
            label = row["label"] if i == 0 else ""
            lines.append([label, str(p["pass"]), *(_fmt(p.get(k), k) for k, _ in cols)])
    for ref in report.get("published", []):
        for i, p in enumerate(ref["accuracy_by_pass"]):
            label = ref["label"] if i == 0 else ""
            cells = ["-"] * len(cols)
            cells[0] = _fmt(p["accuracy"], "accuracy")
            lines.append([label, "?" if p["pass"] is None else str(p["pass"]), *cells])
    header = ["learner", "pass", *(title for _, title in cols)]
    widths = [max(len(r[i]) for r in [header, *lines]) for i in range(len(header))]

    def render(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    out = [headline(report), "", render(header), render(["-" * w for w in widths])]
    previous = None
    for cells in lines:
        if cells[0] and previous is not None:
            out.append("")
        out.append(render(cells))
        previous = cells
    notes = [f"  {r['label']}: {r['note']}" for r in report["results"] if r.get("note")]
    notes += [f"  {r['label']}: {r['note']}" for r in report.get("published", [])]
    refused = [f"  {r['label']}: {r['refused']} labels refused" for r in report["results"]]
    refused = [line for line, r in zip(refused, report["results"], strict=True) if r["refused"]]
    if notes or refused:
        out += ["", "notes:", *notes, *refused]
    if report.get("checks"):
        out += ["", "targets:"]
        width = max(len(c["target"]) for c in report["checks"])
        for c in report["checks"]:
            out.append(f"  [{c['status']:>4}] {c['target'].ljust(width)}  {c['measured']}")
    return "\n".join(out)


def dumps(report: Report) -> str:
    """Indented JSON with every list of plain values on one line (curves stay readable).

    >>> print(dumps({"a": [1, 2], "b": {"c": "x"}}))
    {
      "a": [1, 2],
      "b": {
        "c": "x"
      }
    }
    """
    text = json.dumps(report, indent=2, ensure_ascii=False)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r",\n\s+", ", ", m.group(1)) + "]", text)


_FLAT_LIST = re.compile(r"\[\n\s+([^\[\]{}]*?)\n\s*\]")


def write_json(report: Report, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(report) + "\n")
    return path


def plot_curves(report: Report, path: Path) -> Path:
    """Accuracy (or MAE) within each pass against events seen, one line per contender."""
    fig = curves_figure(report)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
Y_PAD = 0.03
"""The accuracy axis ends this share of its span above 1.0, so a curve at exactly 1.0 is drawn
inside the frame."""


def curves_figure(report: Report) -> Any:
    """The learning-curve figure (a matplotlib ``Figure``).

    Curves that coincide stay visible: oml's learners are drawn on top (thin solid lines),
    the baselines below them as wide translucent dashed bands, and every curve carries its own
    marker at points staggered from the others'.  The accuracy axis goes a little above 1.0.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d, proto = report["dataset"], report["protocol"]
    n, passes = d["rows"], proto["passes"]
    regression = d["task"] == "regression"
    fig = Figure(figsize=(9, 5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    dashes = iter([(5, 2), (2, 2), (6, 2, 1, 2), (1, 1)] * 4)
    rows = report["results"]
    for i, row in enumerate(rows):
        x, y = _broken(row["curve"]["events"], row["curve"]["value"], n)
        step = max(1, len(x) // 10)
        style = {"marker": MARKERS[i % len(MARKERS)], "ms": 5, "label": row["label"],
                 "markevery": (i * step // max(len(rows), 1), step)}
        if row["kind"] == "learner":
            ax.plot(x, y, "-", lw=1.6, zorder=4 + i * 0.01, **style)
        else:
            ax.plot(x, y, lw=3.2, alpha=0.5, dashes=next(dashes), zorder=2 + i * 0.01,
                    **style)
    for ref in report.get("published", []):
        for j, p in enumerate(ref["accuracy_by_pass"]):
            label = ref["label"] if j == 0 else None
            if p["pass"] is None:
                ax.axhline(p["accuracy"], color="black", ls=":", lw=1, label=label)
            else:
                ax.plot([p["pass"] * n], [p["accuracy"]], "k*", ms=10, label=label, zorder=5)
    for k in range(1, passes):
        ax.axvline(k * n + 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlim(0, passes * n * 1.015)
    if not regression:
        low = max(0.0, _low(report) - 0.02)
        ax.set_ylim(low, 1.0 + max(0.005, Y_PAD * (1.0 - low)))
        ax.set_yticks([t for t in ax.get_yticks() if low <= t <= 1.0])
        ax.axhline(1.0, color="grey", lw=0.6)
    ax.set_xlabel(f"events seen ({passes} passes of {n}, seed {proto['seed']})")
    ax.set_ylabel("MAE within the pass" if regression else "accuracy within the pass")
    ax.set_title(f"{d['name']}: prequential, label delay {proto['label_delay']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right" if not regression else "upper right")
    fig.tight_layout()
    return fig


def _broken(events: list[int], values: list[float], n: int) -> tuple[list[float], list[float]]:
    """The curve with a gap at each pass boundary, so passes are not joined by a line."""
    x: list[float] = []
    y: list[float] = []
    for i, (e, v) in enumerate(zip(events, values, strict=True)):
        if i and (e - 1) // n != (events[i - 1] - 1) // n:
            x.append(math.nan)
            y.append(math.nan)
        x.append(e)
        y.append(v)
    return x, y


def _low(report: Report) -> float:
    """A lower y limit that keeps the settled part of every curve in view."""
    lows = []
    for row in report["results"]:
        values = row["curve"]["value"]
        lows.append(min(values))
    return min(lows) if lows else 0.0


def _styles(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Line styles: oml's learners solid on top, the baselines as translucent dashed bands."""
    dashes = iter([(5, 2), (2, 2), (6, 2, 1, 2), (1, 1)] * 4)
    out = []
    for i, row in enumerate(rows):
        style: dict[str, Any] = {"label": row["label"], "marker": MARKERS[i % len(MARKERS)],
                                 "ms": 4}  # fmt: skip
        if row["kind"] == "learner":
            style.update(lw=1.3, zorder=4 + i * 0.01)
        else:
            style.update(lw=2.6, alpha=0.5, dashes=next(dashes), zorder=2 + i * 0.01)
        out.append(style)
    return out


def plot_windowed(report: Report, path: Path) -> Path:
    """Windowed accuracy over the whole run with the drift points marked (drift streams)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d, proto = report["dataset"], report["protocol"]
    rows = [r for r in report["results"] if "windowed" in r]
    fig = Figure(figsize=(11, 5.5), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for row, style in zip(rows, _styles(rows), strict=True):
        w = row["windowed"]
        step = max(1, len(w["events"]) // 12)
        ax.plot(w["events"], w["accuracy"], markevery=(rows.index(row) * step // len(rows), step),
                **style)  # fmt: skip
    n, passes = d["rows"], proto["passes"]
    for i, e in enumerate(proto.get("drift_points", [])):
        ax.axvline(e, color="red", lw=1, ls="--", alpha=0.8, label="drift" if i == 0 else None)
    for k in range(1, passes):
        if k * n + 1 not in proto.get("drift_points", []):
            ax.axvline(k * n + 0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlim(0, passes * n * 1.01)
    ax.set_xlabel(f"events ({passes} passes of {n}, in stream order)")
    ax.set_ylabel(f"accuracy over the last {proto['window']} events")
    ax.set_title(f"{d['name']}: windowed accuracy, drift points dashed red")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def plot_reliability(report: Report, path: Path) -> Path:
    """The reliability diagram (accuracy of the top label against its mean confidence, per
    confidence bin) on the last pass, one line per contender that gives probabilities; the
    share of events per bin underneath."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    d, proto = report["dataset"], report["protocol"]
    rows = [r for r in report["results"] if "reliability" in r["passes"][-1]]
    fig = Figure(figsize=(7.5, 8), dpi=110)
    FigureCanvasAgg(fig)
    ax, hist = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="black", lw=0.8, ls=":", label="perfectly calibrated")
    width = 0.1 / max(len(rows), 1)
    for i, (row, style) in enumerate(zip(rows, _styles(rows), strict=True)):
        last = row["passes"][-1]
        rel = last["reliability"]
        pts = [(c, a) for c, a in zip(rel["confidence"], rel["accuracy"], strict=True)
               if c is not None]  # fmt: skip
        style["label"] = f"{row['label']} (ECE {last['ece']:.3f})"
        (line,) = ax.plot([c for c, _ in pts], [a for _, a in pts], **style)
        total = sum(rel["count"]) or 1
        hist.bar([lo + (i + 0.5) * width for lo in rel["lower"]],
                 [k / total for k in rel["count"]], width=width, alpha=0.7,
                 color=line.get_color())  # fmt: skip
    # the top label's probability is at least 1 / K: start the axes at that bin
    low = math.floor(10 / max(len(d["classes"]), 1)) / 10
    ax.set_xlim(low, 1)
    ax.set_ylim(low, 1.02)
    ax.set_ylabel("accuracy of the top label")
    ax.set_title(f"{d['name']}: reliability, pass {proto['passes']} of {proto['passes']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    hist.set_xlabel("confidence (largest predicted probability), 10 equal-width bins")
    hist.set_ylabel("share of events")
    hist.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
