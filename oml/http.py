"""The service's HTTP endpoint: ``/metrics``, ``/healthz`` and ``/readyz``, bounded.

* ``/metrics``: the service registry, Prometheus text format (OpenMetrics when the scraper
  asks for it).
* ``/healthz``: 200 while ``metrics.heartbeat()`` was called within ``heartbeat_timeout``
  seconds and the instance has not failed (``metrics.set_failed``: its broker lost its topics
  or offsets), else 503 (``"status": "failed"`` with the cause, or ``"stale"``).
* ``/readyz``: 200 when ``metrics.is_ready`` (set ready, no partition restoring) and the
  heartbeat is fresh, else 503.

Bounds, so that no client can tie it up: at most ``max_connections`` are served at once (one
thread each); a further connection waits for a slot for up to half of ``request_timeout``
(others queue behind it in the listen backlog), and is then answered 503 and closed.  A
client must send its whole request within ``request_timeout`` seconds of being served (a
deadline for the request, not a timeout per read, so one byte a second does not keep it
open), and one request is served per connection (HTTP/1.0).

prometheus_client's own server (``start_http_server``, or ``make_wsgi_app`` under wsgiref) has
none of these bounds and no probe endpoints; its encoder is used here for ``/metrics``.
"""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    from oml.config import MetricsConfig
    from oml.observability import ServiceMetrics

__all__ = ["HealthServer"]

log = structlog.get_logger()


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each given only the time left until ``deadline`` (monotonic)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("request deadline passed")
        self.sock.settimeout(left)
        return self.sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    health: HealthServer
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        """Serve in a thread if a slot frees within half the request timeout, else refuse."""
        if not self.slots.acquire(timeout=self.health.request_timeout / 2):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        self.health.refused += 1
        log.warning("http_connection_refused", cause="max_connections",
                    max_connections=self.health.max_connections)
        try:
            request.settimeout(0.5)
            request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
        except OSError:
            pass
        self.shutdown_request(request)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "oml-health"

    def setup(self) -> None:
        timeout = self.server.health.request_timeout
        super().setup()
        self.rfile = io.BufferedReader(  # type: ignore[assignment]
            _DeadlineReader(self.connection, time.monotonic() + timeout)
        )

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, *, send_body: bool) -> None:
        # for the answer: a client that does not read it is dropped too
        self.connection.settimeout(self.server.health.request_timeout)
        health = self.server.health
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(health.metrics.registry), content_type, send_body)
            elif path == "/healthz":
                status, body = health.liveness()
                self._reply_json(status, body, send_body)
            elif path == "/readyz":
                status, body = health.readiness()
                self._reply_json(status, body, send_body)
            else:
                self._reply_json(404, {"status": "not_found", "path": path}, send_body)
        except OSError:
            raise  # the client went away or stalled: nothing to answer
        except Exception:
            log.exception("health_endpoint_failed", path=path)
            self._reply_json(500, {"status": "error"}, send_body)

    def _reply_json(self, status: int, body: dict[str, Any], send_body: bool) -> None:
        payload = json.dumps(body).encode() + b"\n"
        self._reply(status, payload, "application/json", send_body)

    def _reply(self, status: int, payload: bytes, content_type: str, send_body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if send_body:
            self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Probes and scrapes come every few seconds: no access log.
        pass


class HealthServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` over HTTP (see the module docstring).

    ``port=0`` binds a free port; read it from :attr:`port` after :meth:`start`.

    Args:
        port: TCP port; 0 for any free one.
        metrics: the service's metrics (registry, heartbeat, readiness).
        host: address to bind; ``"0.0.0.0"`` (all IPv4 interfaces, as a container
            needs), ``"127.0.0.1"`` for local only, ``"::"`` for IPv6.
        heartbeat_timeout: seconds without heartbeat after which ``/healthz`` fails.
        max_connections: connections served at once.
        request_timeout: seconds a client has to send its request (and to wait for a slot).
    """

    def __init__(
        self,
        port: int,
        metrics: ServiceMetrics,
        host: str = "0.0.0.0",  # noqa: S104  (a container's probe and scraper come from outside)
        *,
        heartbeat_timeout: float = 30.0,
        max_connections: int = 16,
        request_timeout: float = 5.0,
    ) -> None:
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be positive")
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        if request_timeout <= 0:
            raise ValueError("request_timeout must be positive")
        self.metrics = metrics
        self.host = host
        self.heartbeat_timeout = heartbeat_timeout
        self.max_connections = max_connections
        self.request_timeout = request_timeout
        self.refused = 0
        """Connections closed unanswered because every slot stayed busy."""
        self._requested_port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(cls, config: MetricsConfig, metrics: ServiceMetrics) -> HealthServer:
        """The server as ``[metrics]`` configures it (port, host, bounds)."""
        return cls(config.port, metrics, config.host, max_connections=config.max_connections,
                   request_timeout=config.request_timeout_s)

    # -- probe logic (also usable without HTTP) --------------------------------------

    def is_alive(self) -> bool:
        return (self.metrics.failure is None
                and self.metrics.seconds_since_heartbeat() <= self.heartbeat_timeout)

    def liveness(self) -> tuple[int, dict[str, Any]]:
        age = round(self.metrics.seconds_since_heartbeat(), 3)
        if self.metrics.failure is not None:
            return 503, {"status": "failed", "error": self.metrics.failure,
                         "heartbeat_age_seconds": age}
        if age <= self.heartbeat_timeout:
            return 200, {"status": "ok", "heartbeat_age_seconds": age}
        log.warning("liveness_failed", heartbeat_age_seconds=age, timeout=self.heartbeat_timeout)
        return 503, {"status": "stale", "heartbeat_age_seconds": age}

    def readiness(self) -> tuple[int, dict[str, Any]]:
        alive = self.is_alive()
        if self.metrics.is_ready and alive:
            return 200, {"status": "ready"}
        return 503, {
            "status": "not_ready",
            "phase": self.metrics.phase,
            "partitions_restoring": sorted(self.metrics.restoring),
            "alive": alive,
        }

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with ``port=0``)."""
        if self._server is None:
            raise RuntimeError("HealthServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):  # noqa: S104
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def start(self) -> HealthServer:
        """Bind and serve in a daemon thread; returns ``self``. Raises ``OSError`` if the
        port is taken."""
        if self._server is not None:
            return self
        server_cls = _Server6 if ":" in self.host else _Server
        server = server_cls((self.host, self._requested_port), _Handler)
        server.health = self
        server.slots = threading.BoundedSemaphore(self.max_connections)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="oml-health",
            daemon=True,
        )
        self._thread.start()
        log.info("health_server_started", host=self.host, port=self.port,
                 max_connections=self.max_connections, request_timeout_s=self.request_timeout)
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; safe to call twice."""
        server, thread = self._server, self._thread
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None
        log.info("health_server_stopped")

    def __enter__(self) -> HealthServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
