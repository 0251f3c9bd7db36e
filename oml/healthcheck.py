"""The container's health check: ``python -m oml.healthcheck`` exits 0 when ``/healthz`` of
the service in this container answers 200.

The port is the one the service was started with: ``--metrics-port`` (or ``--set
metrics.port=``) on the command line of process 1 (the container's ``oml run``), else
``OML_METRICS__PORT``, else 9100.  Standard library only (the slim image has no curl).
"""

from __future__ import annotations

import http.client
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

DEFAULT_PORT = 9100


def metrics_port(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """The metrics port that ``argv`` (a service's command line) and ``env`` configure.

    >>> metrics_port(["oml", "run", "--metrics-port", "9200"], {"OML_METRICS__PORT": "9100"})
    9200
    >>> metrics_port(["oml", "run", "--set", "metrics.port=9300"], {})
    9300
    >>> metrics_port(["oml", "run", "--metrics-port=9400"], {})
    9400
    >>> metrics_port(["oml", "run"], {"OML_METRICS__PORT": "9500"}), metrics_port([], {})
    (9500, 9100)
    """
    found: str | None = None
    args = list(argv)
    for i, arg in enumerate(args):
        value = args[i + 1] if i + 1 < len(args) else ""
        if arg == "--metrics-port":
            found = value
        elif arg.startswith("--metrics-port="):
            found = arg.partition("=")[2]
        elif arg == "--set" and value.startswith("metrics.port="):
            found = value.partition("=")[2]
    port = found if found is not None else env.get("OML_METRICS__PORT", str(DEFAULT_PORT))
    return int(port)


def _service_argv() -> list[str]:
    try:
        raw = Path("/proc/1/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def main() -> int:
    port = metrics_port(_service_argv(), os.environ)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
        conn.request("GET", "/healthz")
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        print(f"unhealthy: 127.0.0.1:{port}/healthz: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"unhealthy: 127.0.0.1:{port}/healthz answered {status}", file=sys.stderr)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
