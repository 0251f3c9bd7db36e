"""The README's `oml bench learners` table, from the result files: the last pass of each data set.

    python benchmarks/learners_table.py benchmarks/learners/{banknote,iris,sea-drift,...}.json

One row per data set and contender (``scw``, ``StandardScaler | scw``, ``pa``, River's
``StandardScaler | LogisticRegression`` and the class prior): accuracy, log loss, ECE and the
recovery time after each drift point of the last pass.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from oml.bench.report import format_recovery

SHOWN = ("scw", "StandardScaler | scw", "pa", "river StandardScaler |", "class prior")


def rows(path: Path) -> list[str]:
    report = json.loads(path.read_text())
    out = []
    for r in report["results"]:
        if not any(r["label"] == s or r["label"].startswith(s) for s in SHOWN if s):
            continue
        last = r["passes"][-1]
        cells = [
            report["dataset"]["name"],
            "`" + r["label"].replace("|", "\\|") + "`",
            f"{last['accuracy']:.4f}",
            f"{last['log_loss']:.4f}" if "log_loss" in last else "-",
            f"{last['ece']:.4f}" if "ece" in last else "-",
            format_recovery(last.get("recovery")),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return out


def main(paths: list[str]) -> None:
    print("| data | contender | accuracy | log loss | ECE | recovery (events) |")
    print("|---|---|---|---|---|---|")
    for p in paths:
        print("\n".join(rows(Path(p))))


if __name__ == "__main__":
    main(sys.argv[1:])
