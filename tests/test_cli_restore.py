"""``oml run`` when state cannot be restored: whatever part of restore fails (reading a changelog
partition to its end, or decoding one of its records), the service stops with exit code 1 and
one ``service_failed`` line whose cause is ``restore_error``, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

ENV = {k: v for k, v in os.environ.items() if not k.startswith("OML_")}

# The failure is put in place in the child process, before the command runs; the
# service_failed line says what failed.
_SAYS = {"read": "broken for the test", "decode": "at offset 7 cannot be decoded"}
_FAILURES = {
    "read": """
def failing(self, topic, partition, *args, **kwargs):
    raise restore.RestoreError(f"reading {topic!r} partition {partition}: broken for the test")
    yield
restore.ChangelogReader._messages = failing  # what batches and latest read through
""",
    "decode": """
def latest(self, topic, partition, **kwargs):
    return {b"k": (b"broken for the test", 7)} if topic.endswith(".models") else {}
restore.ChangelogReader.latest = latest
""",
}


@pytest.mark.broker
@pytest.mark.slow
@pytest.mark.parametrize("failure", sorted(_FAILURES))
def test_a_restore_failure_is_one_service_failed_line_and_exit_code_1(
    failure: str, bootstrap_servers: str, kafka_config: dict[str, str], new_topic
) -> None:
    topic = new_topic(partitions=1)
    script = "\n".join([
        "import sys",
        "from oml.kafka import restore",
        _FAILURES[failure],
        "from oml.cli import main",
        "sys.exit(main(sys.argv[1:]))",
    ])  # fmt: skip
    extra = [arg for k, v in kafka_config.items() if k != "bootstrap.servers"
             for arg in ("--kafka", f"{k}={v}")]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", script, "run", "--bootstrap-servers", bootstrap_servers,
         "--input", topic, "--group-id", f"g-{topic}", "--exit-when-idle", "20",
         "--log-format", "json", *extra],
        capture_output=True, text=True, timeout=120, env=ENV,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert done.returncode == 1, done.stderr[-3000:]
    logged = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    (failed,) = [e for e in logged if e["event"] == "service_failed"]
    assert failed["cause"] == "restore_error" and failed["exit_code"] == 1
    assert _SAYS[failure] in failed["error"]
