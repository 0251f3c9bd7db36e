"""Logging set-up: structlog configured once, at start-up, by the CLI only.

Everything else in the package does::

    import structlog

    log = structlog.get_logger()

and logs snake_case facts (``log.info("partition_restored", partition=3, records=120)``),
binding key / partition / offset per unit of work. Nothing logs per event at INFO on the
hot path.

Output is one line per event on a single stream (standard error by default):

* ``fmt="json"``: one JSON object per line, ISO-8601 UTC ``timestamp``, ``level``,
  ``event``, the bound context, and a structured ``exception`` when there is one;
* ``fmt="console"``: structlog's human-readable console renderer (colours on a terminal);
* ``fmt="auto"`` (default): console on a terminal, JSON otherwise (a container, a pipe,
  a file, CI).

Records from the standard library's :mod:`logging` (libraries, warnings) go through the
same renderer to the same stream, so a log collector sees one format.  librdkafka's own log
lines (``%3|...|FAIL|...`` on stderr by default) come the same way: every oml client is built
with ``logger=librdkafka_logger()``, whose :class:`Throttle` lets one line per librdkafka
facility through every 30 s and counts the rest (a broker that is down otherwise writes
about 20 lines a second).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any, Literal, TextIO

import structlog
import structlog.tracebacks
from structlog.types import Processor

__all__ = [
    "FORMATS", "LEVELS", "RestatedErrors", "Throttle", "configure_logging", "librdkafka_logger",
]

LEVELS: dict[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}
FORMATS = ("auto", "json", "console")

# Chatty third-party loggers: never below WARNING, even at ``level="debug"``.
_NOISY_LOGGERS = ("matplotlib", "PIL", "urllib3")


LIBRDKAFKA_LOGGER = "librdkafka"
THROTTLE_S = 30.0


class Throttle(logging.Filter):
    """Lets through the first record of each key, then at most one per ``interval_s``; the
    record that passes after a quiet spell carries ``suppressed=N``, the count dropped since.

    The key is librdkafka's facility (``FAIL``, ``REQTMOUT``...: the first of the record's
    args) and the client name, else the message template.

    >>> t = Throttle(interval_s=60)
    >>> recs = [logging.LogRecord("x", 40, "", 0, "%s [%s] %s", ("FAIL", "c", m), None)
    ...         for m in ("down", "down", "down")]
    >>> [t.filter(r) for r in recs]
    [True, False, False]
    """

    def __init__(self, interval_s: float = THROTTLE_S) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._last: dict[Any, float] = {}
        self._dropped: dict[Any, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        key = tuple(args[:2]) if isinstance(args, tuple) and len(args) >= 2 else record.msg
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval_s:
                self._dropped[key] = self._dropped.get(key, 0) + 1
                return False
            self._last[key] = now
            dropped = self._dropped.pop(key, 0)
        if dropped:
            record.suppressed = dropped
        return True


class RestatedErrors(logging.Filter):
    """Drops librdkafka's lines about a fatal error, fencing or a failed transaction step
    (facilities ``FATAL``, ``TXNERR``, ``ADDPARTS``, ``ADDOFFSETS``, ``ENDTXN``, or a line that
    says ``fence``): the same error reaches the service as an exception from its call, and the
    service reports it once (``transaction_aborted`` if it recovers, else its
    ``service_failed`` line, with the setting to change).

    >>> f = RestatedErrors()
    >>> def rec(fac, msg):
    ...     return logging.LogRecord("x", 50, "", 0, "%s [%s] %s", (fac, "c", msg), None)
    >>> [f.filter(rec(fac, msg)) for fac, msg in
    ...  [("FATAL", "Fatal error"), ("ADDPARTS", "... fenced ..."), ("FAIL", "refused")]]
    [False, False, True]
    """

    FACILITIES = frozenset({"FATAL", "TXNERR", "ADDPARTS", "ADDOFFSETS", "ENDTXN"})

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if not (isinstance(args, tuple) and len(args) >= 3):
            return True
        return args[0] not in self.FACILITIES and "fence" not in str(args[2]).lower()


def librdkafka_logger() -> logging.Logger:
    """The logger given to every librdkafka client (its ``logger`` setting): librdkafka's
    lines then reach the configured renderer (served on the client's poll), throttled, and
    without the fatal-error lines the service restates (:class:`RestatedErrors`)."""
    logger = logging.getLogger(LIBRDKAFKA_LOGGER)
    if not any(isinstance(f, RestatedErrors) for f in logger.filters):
        logger.addFilter(RestatedErrors())
    if not any(isinstance(f, Throttle) for f in logger.filters):
        logger.addFilter(Throttle())
    return logger


class _StderrProxy:
    """Writes to whatever ``sys.stderr`` is *at write time*.

    Binding the stream object at configure time would pin a stream that may be replaced
    or closed later (pytest's capture, a redirect); this indirection keeps the default
    "standard error" meaning what it says.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return _isatty(sys.stderr)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def _parse_level(level: str | int) -> int:
    if isinstance(level, int):
        return level
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; expected one of {', '.join(LEVELS)}"
        ) from None


def _resolve_format(fmt: str, stream: Any) -> Literal["json", "console"]:
    fmt = fmt.strip().lower()
    if fmt == "auto":
        return "console" if _isatty(stream) else "json"
    if fmt == "json":
        return "json"
    if fmt == "console":
        return "console"
    raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")


def configure_logging(
    level: str | int = "info",
    fmt: str = "auto",
    stream: TextIO | None = None,
    *,
    cache_loggers: bool = True,
) -> None:
    """Configure structlog and route the standard library's logging through it.

    Args:
        level: minimum level, ``debug`` / ``info`` / ``warning`` / ``error`` /
            ``critical`` (case-insensitive) or a :mod:`logging` integer. Calls below it
            cost a no-op method call (``structlog.make_filtering_bound_logger``).
        fmt: ``auto`` (console on a terminal, JSON otherwise), ``json`` or ``console``.
        stream: where lines go; ``None`` (default) means ``sys.stderr`` as it is at
            each write.
        cache_loggers: structlog's ``cache_logger_on_first_use``. Leave it on in the
            service (each module logger is then built once); tests that reconfigure
            several times in one process pass ``False``, because a logger that has
            already been used keeps the configuration it was built with.

    Idempotent: calling it again replaces the previous configuration (and the one
    root handler it installed) instead of adding to it.

    Raises:
        ValueError: on an unknown level or format.
    """
    min_level = _parse_level(level)
    out: Any = _StderrProxy() if stream is None else stream
    renderer_name = _resolve_format(fmt, out)

    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        timestamper,
    ]
    renderer: Processor
    tail: list[Processor]
    if renderer_name == "json":
        # Structured tracebacks, without local variables: they can hold feature values
        # or credentials, and they make lines huge.
        tail = [
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
        ]
        renderer = structlog.processors.JSONRenderer()
    else:
        tail = []  # the console renderer formats exceptions itself
        renderer = structlog.dev.ConsoleRenderer(colors=_isatty(out))

    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *tail,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(min_level),
        context_class=dict,
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=cache_loggers,
    )
    _route_stdlib_logging(min_level, out, shared, tail, renderer)


def _route_stdlib_logging(
    min_level: int,
    out: Any,
    shared: list[Processor],
    tail: list[Processor],
    renderer: Processor,
) -> None:
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            *shared,
            structlog.stdlib.add_logger_name,
            structlog.stdlib.ExtraAdder(),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *tail,
            renderer,
        ],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    handler.setLevel(min_level)
    handler._oml_handler = True  # type: ignore[attr-defined]  # found again on reconfigure

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_oml_handler", False)]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(min_level)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(min_level, logging.WARNING))
    logging.captureWarnings(True)  # warnings.warn(...) -> logger "py.warnings"
