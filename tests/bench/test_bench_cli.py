"""``oml bench``: the parser the lead's CLI mounts, and end-to-end runs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

import oml.plugins
from oml.bench import cli, contenders


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="oml")
    cli.add_parser(parser.add_subparsers())
    return parser.parse_args(argv)


def test_bench_without_a_subcommand_is_learners() -> None:
    args = parse("bench", "--dataset", "banknote")
    assert args.bench_command is None and args.dataset == "banknote"
    assert args.handler is cli.run
    config = cli.learners_config(args)
    assert (config.dataset, config.passes, config.seed, config.delay) == ("banknote", 3, 0, 0)
    assert config.baselines and config.download


def test_learners_subcommand_and_options_on_either_side() -> None:
    args = parse("bench", "--passes", "2", "--quiet", "learners", "--dataset", "iris",
                 "--algorithm", "scw:eta=0.9", "--param", "scw.C=0.5", "--delay", "4",
                 "--no-baselines")  # fmt: skip
    assert args.bench_command == "learners"
    config = cli.learners_config(args)
    assert (config.dataset, config.passes, config.delay) == ("iris", 2, 4)
    assert config.algorithms == [("scw", {"eta": 0.9})]
    assert config.params == [("scw", "C", 0.5)]
    assert not config.baselines and args.quiet


def test_speed_subcommand_arguments() -> None:
    args = parse("bench", "speed", "--dims", "4", "100", "--repeats", "3")
    assert (args.bench_command, args.dims, args.repeats) == ("speed", [4, 100], 3)
    assert args.data == ["teacher", "random"] and args.speed_algorithm is None


def test_bad_usage_is_exit_code_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.run(parse("bench", "--dataset", "nope", "--out", str(tmp_path))) == 3  # data
    assert "unknown data set 'nope'" in capsys.readouterr().err
    assert cli.run(parse("bench", "--dataset", "iris", "--csv", "x.csv")) == 2
    assert cli.run(parse("bench", "--passes", "0")) == 2
    assert cli.run(parse("bench", "--param", "scw-C=1")) == 2


def test_iris_end_to_end_with_the_real_registry(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "results"
    args = parse("bench", "--dataset", "iris", "--passes", "1", "--data-dir", str(data_dir),
                 "--out", str(out), "--quiet")  # fmt: skip
    assert cli.run(args) == 0
    stdout = capsys.readouterr().out
    assert "\niris: 150 rows, 4 features" in "\n" + stdout
    assert "river OneVsRest(PAClassifier)" in stdout and "wrote " in stdout
    report = json.loads((out / "iris.json").read_text())
    assert report["protocol"]["passes"] == 1
    assert report["command"] == ""  # not run as `oml` or `python -m oml.bench`
    learners = [r["label"] for r in report["results"] if r["kind"] == "learner"]
    baselines = [r["label"] for r in report["results"] if r["kind"] == "baseline"]
    registry = oml.plugins.default_registry()
    names = [n for n in ("pa", "scw") if n in registry.classes]
    assert learners == [*names, *(f"StandardScaler | {n}" for n in names)]
    assert baselines[-2:] == ["river StandardScaler | OneVsRest(LogisticRegression)", "class prior"]
    assert (out / "iris.png").read_bytes()[:4] == b"\x89PNG"
    assert (out / "iris-reliability.png").read_bytes()[:4] == b"\x89PNG"
    assert not (out / "iris-windowed.png").exists()  # no drift stream, no windowed plot


def test_through_the_oml_command(data_dir, tmp_path, registry, monkeypatch, capsys) -> None:
    oml_cli = pytest.importorskip("oml.cli")
    monkeypatch.setattr(oml.plugins, "default_registry", lambda: registry)
    monkeypatch.setattr(contenders, "sklearn_baseline", lambda ds: None)
    monkeypatch.setenv("OML_DATA_DIR", str(data_dir))
    code = oml_cli.main(["bench", "learners", "--dataset", "banknote", "--out", str(tmp_path),
                         "--no-plot", "--quiet"])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 1, stdout  # the stand-in "scw" misses its target: the exit code says so
    assert "[pass] pa predicts exactly as River PAClassifier" in stdout
    assert "[fail] scw accuracy >= 0.985" in stdout
    assert (tmp_path / "banknote.json").exists() and not (tmp_path / "banknote.png").exists()


def test_results_go_under_the_current_directory_by_default(
    tmp_path, registry, monkeypatch, capsys
) -> None:
    """Not into the checkout: benchmarks/learners/ changes only with an explicit --out."""
    from oml.bench.datasets import packaged_dir

    kept = Path(__file__).resolve().parents[2] / "benchmarks" / "learners" / "iris.json"
    before = kept.read_bytes() if kept.exists() else None
    monkeypatch.setattr(oml.plugins, "default_registry", lambda: registry)
    monkeypatch.setattr(contenders, "sklearn_baseline", lambda ds: None)
    monkeypatch.chdir(tmp_path)
    code = cli.run(parse("bench", "--dataset", "iris", "--passes", "1", "--no-plot", "--quiet"))
    assert code in (0, 1)
    report = json.loads((tmp_path / "oml-bench" / "iris.json").read_text())
    assert report["dataset"]["source"] == str(packaged_dir() / "iris.csv")
    assert (kept.read_bytes() if kept.exists() else None) == before
    assert "oml-bench/iris.json" in capsys.readouterr().out


def test_speed_end_to_end(tmp_path, registry, monkeypatch, capsys) -> None:
    monkeypatch.setattr(oml.plugins, "default_registry", lambda: registry)
    args = parse("bench", "speed", "--dims", "4", "12", "--events", "200", "--repeats", "2",
                 "--algorithm", "majority", "--out", str(tmp_path), "--quiet")  # fmt: skip
    code = cli.run(args)
    report = json.loads((tmp_path / "speed.json").read_text())
    assert code == (1 if any(c["status"] == "fail" for c in report["checks"]) else 0)
    rows = {(r["learner"], r["d"], r["data"]) for r in report["results"]}
    assert rows == {(who, d, kind) for who in ("majority", "river PAClassifier")
                    for d in (4, 12) for kind in ("teacher", "random")}  # fmt: skip
    assert all(len(r["repeats_us"]) == 2 for r in report["results"])
    assert [c["d"] for c in report["checks"]] == [4, 4]  # targets exist for d=4 and d=100 only
    assert "river PAClassifier" in capsys.readouterr().out


def test_the_cli_constants_match() -> None:
    from oml.bench import speed

    assert cli.DEFAULT_STAGES == speed.DEFAULT_STAGES
