"""Restart-to-ready after a SIGKILL: launch of the new ``oml run`` to its first ``/readyz`` 200.

On a broker of its own (embedded Tansu), with ``session.timeout.ms=6000`` (the embedded
default): an instance is started, made ready, killed with SIGKILL, and started again; the time
from the second launch to ready is one sample.  ``--pinned`` pins ``kafka.instance_id`` (static
membership, ``group.instance.id``); without it each process has its own id.  Writes one JSON
line per mode to stdout::

    python benchmarks/restart.py --repeat 3 > benchmarks/restart/restart.jsonl
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import urllib.request

from confluent_kafka.admin import AdminClient, NewTopic

from oml.kafka.broker import EmbeddedBroker, free_port


def launch(bs: str, port: int, pinned: bool) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "oml.cli", "run", "--bootstrap-servers", bs, "--input", "in",
           "--metrics-port", str(port), "--log-format", "json",
           "--kafka", "session.timeout.ms=6000", "--kafka", "heartbeat.interval.ms=1000"]
    if pinned:
        cmd += ["--set", "kafka.instance_id=pod-0"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def ready_after(port: int, launched: float, timeout: float = 60) -> float:
    while time.monotonic() - launched < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return time.monotonic() - launched
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError("not ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for pinned in (True, False):
        samples, first = [], []
        for _ in range(args.repeat):
            with EmbeddedBroker() as broker:
                bs = broker.bootstrap_servers
                admin = AdminClient({"bootstrap.servers": bs})
                admin.create_topics([NewTopic("in", 4)])["in"].result(30)
                port = free_port()
                t0 = time.monotonic()
                proc = launch(bs, port, pinned)
                first.append(ready_after(port, t0))
                proc.kill()
                proc.wait()
                t0 = time.monotonic()
                proc = launch(bs, port, pinned)
                try:
                    samples.append(ready_after(port, t0))
                finally:
                    proc.kill()
                    proc.wait()
        print(json.dumps({
            "mode": "pinned instance id (static member)" if pinned else "default id (dynamic)",
            "session_timeout_ms": 6000, "broker": "embedded Tansu 0.6",
            "first_start_to_ready_s": [round(x, 2) for x in first],
            "restart_to_ready_s": [round(x, 2) for x in samples],
            "median_restart_s": round(statistics.median(samples), 2),
        }), flush=True)


if __name__ == "__main__":
    main()
