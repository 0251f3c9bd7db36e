"""The ``oml bench`` command.

``oml/cli.py`` calls :func:`add_parser` with its subparsers; the parsed namespace then carries
:func:`run` as ``handler``.  ``oml bench`` has subcommands of its own; with
none it means ``learners``, so ``oml bench --dataset banknote`` works.

A new subcommand is one entry in :data:`SUBCOMMANDS`: a help line, a function that adds its
arguments to its parser, and a function that runs it and returns the exit code.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("oml-bench")
"""Result files go here, under the current directory, unless ``--out`` says otherwise; the
result files kept in the repository (benchmarks/learners/) change only with
``--out benchmarks/learners``."""
BENCH_MODULES = ("sklearn", "tqdm", "matplotlib")
"""What the ``bench`` extra installs; without it ``oml bench`` says so in one line."""
DEFAULT_STAGES = (100,)  # = oml.bench.speed.DEFAULT_STAGES (tested); kept here to import less


@dataclass(frozen=True)
class Subcommand:
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# --------------------------------------------------------------------------------------------
# oml bench learners


def add_learners_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``learners``.  No argparse defaults (they live in :func:`learners_config`),
    so the same arguments can sit on ``bench`` itself and on ``bench learners``."""
    data = p.add_argument_group("data")
    data.add_argument(
        "--dataset", help="a known data set: iris, banknote, or a drift stream: sea-drift, "
        "hyperplane-drift, agrawal-drift, agrawal-shift, epoch-ms (default: banknote)",
    )  # fmt: skip
    data.add_argument("--csv", type=Path, metavar="PATH", help="any CSV with a header line")
    data.add_argument("--target", metavar="COL", help="the target column of --csv")
    data.add_argument(
        "--task",
        choices=["auto", "classification", "regression"],
        help="for --csv (default: auto, from the target values)",
    )
    data.add_argument(
        "--data-dir", type=Path, metavar="DIR", help="folder with other copies of iris.csv / "
        "banknote.csv (default: $OML_DATA_DIR, else the copies shipped with oml)",
    )  # fmt: skip
    data.add_argument(
        "--cache-dir", type=Path, metavar="DIR",
        help="download cache (default: $OML_CACHE_DIR/datasets or ~/.cache/oml/datasets)",
    )  # fmt: skip
    data.add_argument(
        "--no-download", action="store_true", default=argparse.SUPPRESS,
        help="fail instead of fetching a data set from its public origin",
    )  # fmt: skip

    proto = p.add_argument_group("protocol")
    proto.add_argument("--passes", type=int, help="passes over the data (default: 3)")
    proto.add_argument("--seed", type=int, help="seed of the one fixed shuffle (default: 0)")
    proto.add_argument(
        "--delay", type=int, metavar="K",
        help="learn each label only after K further events were predicted (default: 0)",
    )  # fmt: skip

    who = p.add_argument_group("learners")
    who.add_argument(
        "--algorithm", action="append", metavar="NAME[:k=v,...]",
        help="a registered algorithm, repeatable (default: pa and scw; regression: "
        "pa-regressor); e.g. --algorithm scw --algorithm scw:mode=2,eta=0.9",
    )  # fmt: skip
    who.add_argument(
        "--param", action="append", metavar="NAME.k=v",
        help="a parameter for every learner of algorithm NAME, repeatable (e.g. scw.C=0.5)",
    )  # fmt: skip
    who.add_argument(
        "--no-baselines", action="store_true", default=argparse.SUPPRESS,
        help="leave out the River and scikit-learn baselines and the class prior",
    )  # fmt: skip
    who.add_argument(
        "--no-scaled", action="store_true", default=argparse.SUPPRESS,
        help="do not also run each learner behind River's StandardScaler",
    )  # fmt: skip

    out = p.add_argument_group("output")
    out.add_argument(
        "--out", type=Path, metavar="DIR",
        help="folder for DATASET.json, DATASET.png (learning curves), DATASET-reliability.png "
        f"and, for drift streams, DATASET-windowed.png (default: ./{DEFAULT_OUT}/)",
    )  # fmt: skip
    out.add_argument(
        "--no-plot", action="store_true", default=argparse.SUPPRESS, help="skip the PNGs"
    )
    out.add_argument(
        "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )


def learners_config(args: argparse.Namespace) -> Any:
    from oml.bench import contenders as cont
    from oml.bench.evaluate import BenchConfig

    def get(name: str, default: Any) -> Any:
        value = getattr(args, name, None)
        return default if value is None else value

    csv = get("csv", None)
    if csv is not None and get("dataset", None) is not None:
        raise ValueError("give --dataset or --csv, not both")
    passes, delay = get("passes", 3), get("delay", 0)
    if passes < 1:
        raise ValueError("--passes must be at least 1")
    if delay < 0:
        raise ValueError("--delay cannot be negative")
    return BenchConfig(
        dataset=None if csv is not None else get("dataset", "banknote"),
        csv=csv,
        target=get("target", None),
        task=get("task", "auto"),
        data_dir=get("data_dir", None),
        cache_dir=get("cache_dir", None),
        download=not get("no_download", False),
        passes=passes,
        seed=get("seed", 0),
        delay=delay,
        algorithms=[cont.parse_algorithm(s) for s in get("algorithm", [])],
        params=[cont.parse_param(s) for s in get("param", [])],
        baselines=not get("no_baselines", False),
        scaled=not get("no_scaled", False),
    )


class _Progress:
    """One tqdm bar on stderr for the whole run; off when quiet or stderr is not a terminal."""

    def __init__(self, total: int, desc: str, quiet: bool) -> None:
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(
                total=total, desc=desc, unit="ev", file=sys.stderr, delay=0.5, leave=False
            )
        self.label = ""

    def __call__(self, label: str, k: int) -> None:
        if self.bar is None:
            return
        if label != self.label:
            self.label = label
            self.bar.set_postfix_str(label, refresh=False)
        self.bar.update(k)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def command_line() -> str:
    """The command as typed, for the result files ("" when not run from a command line)."""
    prog = Path(sys.argv[0])
    if prog.resolve() == Path(__file__).with_name("__main__.py").resolve():
        return shlex.join(["python", "-m", "oml.bench", *sys.argv[1:]])
    return shlex.join(["oml", *sys.argv[1:]]) if prog.name == "oml" else ""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def run_learners(args: argparse.Namespace) -> int:
    from oml.bench import report as rep
    from oml.bench.evaluate import build_contenders, evaluate, load_dataset
    from oml.plugins import default_registry

    config = learners_config(args)
    ds = load_dataset(config)
    contenders = build_contenders(config, ds, default_registry(), warn)
    quiet = bool(getattr(args, "quiet", None))
    progress = _Progress(len(contenders) * config.passes * ds.n, ds.name, quiet)
    try:
        report = evaluate(
            config, ds=ds, contenders=contenders, progress=progress, command=command_line()
        )
    finally:
        progress.close()
    out = getattr(args, "out", None) or DEFAULT_OUT
    written = [rep.write_json(report, out / f"{ds.name}.json")]
    if not getattr(args, "no_plot", None):
        written.append(rep.plot_curves(report, out / f"{ds.name}.png"))
        if ds.task == "classification":
            written.append(rep.plot_reliability(report, out / f"{ds.name}-reliability.png"))
        if any("windowed" in r for r in report["results"]):
            written.append(rep.plot_windowed(report, out / f"{ds.name}-windowed.png"))
    print(rep.format_table(report))
    print("\nwrote " + ", ".join(str(p) for p in written))
    return 1 if any(c["status"] == "fail" for c in report["checks"]) else 0


# --------------------------------------------------------------------------------------------
# oml bench speed


def add_speed_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dims", type=int, nargs="+", default=[4, 100], metavar="D",
        help="feature dimensions, all timed in the same run (default: 4 100)",
    )  # fmt: skip
    p.add_argument("--events", type=int, default=5000, help="events per stream (default: 5000)")
    p.add_argument("--repeats", type=int, default=7, help="repeats, median kept (default: 7)")
    p.add_argument(
        "--stat", choices=["median", "min"], default="median",
        help="statistic over repeats for the table and targets (default: median; both are "
        "in the JSON; min is the steadier one on a busy machine)",
    )  # fmt: skip
    p.add_argument(
        "--data", nargs="+", choices=["teacher", "random"], default=["teacher", "random"],
        help="label kinds (default: both)",
    )  # fmt: skip
    p.add_argument(
        "--algorithm", action="append", dest="speed_algorithm", default=None,
        metavar="NAME[:k=v,...]",
        help="registered algorithms to time (default: pa and scw with diagonal covariance)",
    )  # fmt: skip
    p.add_argument(
        "--stages", type=int, nargs="*", default=list(DEFAULT_STAGES), metavar="W",
        help="for learners with a bank of their own, also time it with stages of W models "
        f"(default: {' '.join(map(str, DEFAULT_STAGES))}; none: --stages)",
    )  # fmt: skip
    p.add_argument(
        "--out", type=Path, dest="speed_out", default=None, metavar="DIR",
        help=f"folder for speed.json (default: ./{DEFAULT_OUT}/)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=int, dest="speed_seed", default=0, metavar="SEED", help="data seed"
    )
    p.add_argument(
        "--quiet", action="store_true", dest="speed_quiet", default=False, help="no progress bar"
    )


def run_speed(args: argparse.Namespace) -> int:
    from oml.bench import contenders as cont
    from oml.bench import report as rep
    from oml.bench import speed
    from oml.bench.evaluate import environment
    from oml.plugins import default_registry

    registry = default_registry()
    specs = args.speed_algorithm or speed.default_algorithms(registry)
    algorithms = [cont.parse_algorithm(s) for s in specs]
    timed = speed.timed_learners(algorithms, registry, stages=args.stages)
    total = len(timed) * args.repeats * len(args.dims) * len(args.data)
    bar = None
    if not args.speed_quiet and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=total, desc="speed", unit="run", file=sys.stderr)
    try:
        rows = speed.measure(
            timed, args.dims, events=args.events, repeats=args.repeats, kinds=args.data,
            seed=args.speed_seed, progress=None if bar is None else bar.update,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    baseline = "river PAClassifier"
    checks = speed.check_speed_targets(rows, baseline, args.stat)
    report = {
        "schema": 1,
        "command": command_line(),
        "protocol": {
            "events": args.events,
            "repeats": args.repeats,
            "statistic": "us_per_event: median, us_per_event_min: minimum over repeats of "
            "(loop time / events)",
            "table_statistic": args.stat,
            "seed": args.speed_seed,
            "teacher_noise": speed.TEACHER_NOISE,
            "features": "dicts with keys f0..f{d-1}; banks get the same rows as a matrix",
            "bank_stages": args.stages,
        },
        "environment": environment(),
        "baseline": baseline,
        "results": rows,
        "checks": checks,
    }
    path = (args.speed_out or DEFAULT_OUT) / "speed.json"
    rep.write_json(report, path)
    print(speed.format_speed(report))
    print(f"\nwrote {path}")
    return 1 if any(c["status"] == "fail" for c in checks) else 0


# --------------------------------------------------------------------------------------------
# the bench command

SUBCOMMANDS: dict[str, Subcommand] = {
    "learners": Subcommand(
        "prequential accuracy of learners vs baselines on a data set", add_learners_arguments,
        run_learners,
    ),
    "speed": Subcommand(
        "µs per event of predict_one + learn_one at several dimensions", add_speed_arguments,
        run_speed,
    ),
    "throughput": Subcommand(
        "the service's events/s and latency against a bare consume→produce loop",
        lambda p: __import__("oml.bench.throughput", fromlist=["x"]).add_arguments(p),
        lambda a: __import__("oml.bench.throughput", fromlist=["x"]).main(a),
    ),
}  # fmt: skip
DEFAULT_SUBCOMMAND = "learners"


def add_parser(subparsers: Any) -> None:
    """Add ``bench`` (and its subcommands) to the ``oml`` command's subparsers."""
    parser = subparsers.add_parser(
        "bench",
        help="evaluate learners (accuracy vs baselines, speed)",
        description="Evaluate learners. With no subcommand: 'learners'.",
    )
    configure(parser)


def configure(parser: argparse.ArgumentParser) -> None:
    add_learners_arguments(parser)  # `oml bench --dataset banknote` is `oml bench learners ...`
    sub = parser.add_subparsers(dest="bench_command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    for name, cmd in SUBCOMMANDS.items():
        # SUPPRESS: a subcommand's unset options must not blank the ones given before it
        p = sub.add_parser(name, help=cmd.help, argument_default=argparse.SUPPRESS)
        cmd.add_arguments(p)
    parser.set_defaults(handler=run, bench_command=None)


def run(args: argparse.Namespace) -> int:
    """Run the ``bench`` subcommand in ``args``; the exit code (1 if a target failed, 2 on a
    usage error, 3 on a data set error: see :mod:`oml.exits`)."""
    from oml.bench.datasets import DatasetError
    from oml.exits import Exit

    name = getattr(args, "bench_command", None) or DEFAULT_SUBCOMMAND
    try:
        return SUBCOMMANDS[name].run(args)
    except ModuleNotFoundError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing not in BENCH_MODULES:
            raise
        print(f"oml bench {name}: error: the bench needs its extra dependencies (no module "
              f"{missing!r}): pip install 'oml-stream[bench]'", file=sys.stderr)
        return Exit.USAGE
    except DatasetError as exc:
        print(f"oml bench {name}: error: {exc}", file=sys.stderr)
        return Exit.DATA
    except (LookupError, TypeError, ValueError) as exc:
        print(f"oml bench {name}: error: {exc}", file=sys.stderr)
        return Exit.USAGE
    except BrokenPipeError:  # `oml bench | head`: the files are written; stop printing quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m oml.bench``: the bench on its own, without the rest of ``oml``."""
    parser = argparse.ArgumentParser(prog="python -m oml.bench")
    configure(parser)
    return run(parser.parse_args(argv))
