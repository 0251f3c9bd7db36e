"""How a run of the service ends: one summary line, the failure named, and a bounded shutdown.

* A clean stop (SIGTERM, SIGINT, a bound of the run reached) ends with one ``service_stopped``
  info line: the run's summary.
* Anything else ends with one ``service_failed`` error line: the summary, ``error`` (the cause in
  one sentence, with the setting to change when there is one), ``cause`` (a short name) and
  ``exit_code``.  A failure oml foresees (fenced, broker lost, a Kafka error, undecodable state)
  carries no traceback; any other exception is a bug and carries it.
* :class:`ShutdownGuard` bounds the time from SIGTERM to exit: past ``grace_s`` (the broker not
  answering a close, a commit or a restore) it logs ``service_failed`` and ends the process
  with :data:`~oml.exits.Exit.KAFKA`, leaving the uncommitted work to the next owner, as a
  crash would.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from oml.exits import Exit
from oml.kafka import clients

__all__ = [
    "SHUTDOWN_GRACE_S", "BrokerLost", "ShutdownGuard", "failure_of", "is_fatal", "log_end",
]

log = structlog.get_logger()

SHUTDOWN_GRACE_S = 25.0
"""Seconds from SIGTERM (or SIGINT) to the end of the process, whatever the broker does."""


class BrokerLost(RuntimeError):
    """The cluster no longer holds what the service's state was built from: a topic gone or
    reshaped, the cluster replaced, committed offsets gone back or past the end of the log."""


def failure_of(exc: BaseException) -> tuple[str, str, Exit, bool]:
    """``(error, cause, exit code, foreseen)`` for the exception that ended a run.

    >>> from confluent_kafka import KafkaError, KafkaException
    >>> failure_of(BrokerLost("topic x is gone"))[1:]
    ('broker_lost', <Exit.BROKER_LOST: 7>, True)
    >>> failure_of(KafkaException(KafkaError(KafkaError._FENCED)))[1:]
    ('fenced', <Exit.FENCED: 6>, True)
    >>> failure_of(ZeroDivisionError("x"))[1:]
    ('bug', <Exit.FAILED: 1>, False)
    """
    if isinstance(exc, BrokerLost):
        return str(exc), "broker_lost", Exit.BROKER_LOST, True
    error = clients.kafka_error(exc)
    if error is not None:
        if error.code() in clients.FENCED_CODES:
            return clients.describe_error(error), "fenced", Exit.FENCED, True
        return clients.describe_error(error), "kafka_error", Exit.KAFKA, True
    if type(exc).__name__ == "RestoreError":  # oml.service.RestoreError (no import cycle)
        return str(exc), "restore_error", Exit.FAILED, True
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", "interrupted", Exit.INTERRUPTED, True
    return f"{type(exc).__name__}: {exc}", "bug", Exit.FAILED, False


def is_fatal(exc: BaseException | None) -> bool:
    """Whether ``exc`` is a fatal or fenced Kafka error: its client can do no more."""
    error = None if exc is None else clients.kafka_error(exc)
    return error is not None and clients.is_terminal(error)


def log_end(summary: Any, models: int, error: BaseException | None) -> None:
    """The run's one closing line: ``service_stopped``, or ``service_failed`` with the cause."""
    s = summary
    fields: dict[str, Any] = dict(
        events=s.events, predictions=s.predictions, learned=s.learned,
        dead_letters=dict(s.dead_letters), cache_misses=s.cache_misses,
        duplicates=s.duplicates, commits=s.commits, aborts=s.aborts,
        models=models, seconds=round(s.seconds, 3),
    )  # fmt: skip
    if error is None:
        log.info("service_stopped", **fields)
        return
    message, cause, code, foreseen = failure_of(error)
    if not foreseen:
        fields["exc_info"] = error
    log.error("service_failed", error=message, cause=cause, exit_code=int(code), **fields)


class ShutdownGuard:
    """SIGTERM and SIGINT ask the service to stop; past ``grace_s`` the process ends anyway.

    ``stop`` is the service's stop (safe in a signal handler: it sets a flag).  The deadline runs
    on a daemon thread, which logs one ``service_failed`` line and calls ``os._exit``: no Python
    clean-up runs then, and none is owed (the broker process of ``oml run`` on the embedded
    broker dies with its parent; the uncommitted work is redone by the next owner).
    """

    def __init__(self, stop: Callable[..., None], grace_s: float = SHUTDOWN_GRACE_S,
                 exit: Callable[[int], None] = os._exit) -> None:
        self.stop = stop
        self.grace_s = grace_s
        self._exit = exit
        self._armed = threading.Event()
        self._done = threading.Event()
        self._signalled: float | None = None

    def install(self) -> ShutdownGuard:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        return self

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop()
        self.arm(signal.Signals(signum).name)

    def arm(self, reason: str, code: Exit = Exit.KAFKA, cause: str = "shutdown_timeout") -> None:
        """Start the deadline (once): the process ends ``grace_s`` from now at the latest."""
        if self._armed.is_set():
            return
        self._armed.set()
        self._signalled = time.monotonic()
        threading.Thread(target=self._deadline, args=(reason, code, cause),
                         daemon=True, name="oml-shutdown-deadline").start()

    def arm_on(self, failed: Callable[[], bool], every_s: float = 0.5) -> ShutdownGuard:
        """Arm the deadline when ``failed()`` turns true (the broker watch found the cluster
        lost: the loop may be stuck in a call that the lost broker never answers)."""

        def wait() -> None:
            while not self._done.wait(every_s):
                if failed():
                    self.arm("the broker loss", Exit.BROKER_LOST, "broker_lost")
                    return

        threading.Thread(target=wait, daemon=True, name="oml-failure-deadline").start()
        return self

    def _deadline(self, name: str, code: Exit = Exit.KAFKA, cause: str = "shutdown_timeout"
                  ) -> None:
        if self._done.wait(self.grace_s):
            return
        log.error(
            "service_failed", cause=cause, exit_code=int(code),
            error=f"the service did not stop within {self.grace_s:g}s of {name}: the broker "
            "did not answer a commit, an abort or the consumer's close; exiting without them "
            "(the uncommitted work is redone by the next owner of its partitions)",
        )
        sys.stderr.flush()
        self._exit(int(code))

    def done(self) -> None:
        """The run has ended: the deadline is off."""
        self._done.set()
