from __future__ import annotations

import io
import json
import logging
import time
import warnings
from collections.abc import Iterator
from datetime import datetime

import pytest
import structlog

from oml.logs import configure_logging


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """configure_logging changes process-wide state: put it back after each test."""
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    noisy = {name: logging.getLogger(name).level for name in ("matplotlib", "PIL", "urllib3")}
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, lvl in noisy.items():
        logging.getLogger(name).setLevel(lvl)
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_auto_is_json_off_a_tty() -> None:
    out = io.StringIO()
    configure_logging("info", "auto", out, cache_loggers=False)
    log = structlog.get_logger().bind(partition=3)
    structlog.contextvars.bind_contextvars(key="k1")
    log.info("model_updated", offset=42)

    (record,) = lines(out)
    assert record["event"] == "model_updated"
    assert record["level"] == "info"
    assert (record["partition"], record["offset"], record["key"]) == (3, 42, "k1")
    assert record["timestamp"].endswith("Z")
    stamp = datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


def test_level_filtering() -> None:
    out = io.StringIO()
    configure_logging("warning", "json", out, cache_loggers=False)
    log = structlog.get_logger()
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    assert [r["event"] for r in lines(out)] == ["w", "e"]
    assert [r["level"] for r in lines(out)] == ["warning", "error"]

    out = io.StringIO()
    configure_logging("DEBUG", "json", out, cache_loggers=False)
    structlog.get_logger().debug("d")
    assert [r["event"] for r in lines(out)] == ["d"]


def test_stdlib_logging_goes_through_the_same_renderer() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out, cache_loggers=False)
    lib = logging.getLogger("somelib.client")
    lib.debug("too low")
    lib.warning("broker %s down", "b1", extra={"attempt": 2})
    (record,) = lines(out)
    assert record["event"] == "broker b1 down"
    assert record["level"] == "warning"
    assert record["logger"] == "somelib.client"
    assert record["attempt"] == 2
    assert record["timestamp"].endswith("Z")


def test_warnings_are_captured() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out, cache_loggers=False)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", UserWarning, stacklevel=1)
    (record,) = lines(out)
    assert record["logger"] == "py.warnings"
    assert "deprecated thing" in record["event"]


def test_exception_is_structured_without_locals() -> None:
    out = io.StringIO()
    configure_logging("info", "json", out, cache_loggers=False)
    secret = "hunter2"  # noqa: F841  (a local that must not reach the log)
    try:
        raise ValueError("bad record")
    except ValueError:
        structlog.get_logger().exception("decode_failed")
    (record,) = lines(out)
    assert record["level"] == "error"
    (exc,) = record["exception"]
    assert exc["exc_type"] == "ValueError"
    assert exc["exc_value"] == "bad record"
    assert "hunter2" not in out.getvalue()


def test_console_on_a_tty() -> None:
    out = TtyStringIO()
    configure_logging("info", "auto", out, cache_loggers=False)
    structlog.get_logger().info("service_started", port=9100)
    text = out.getvalue()
    assert "service_started" in text and "port" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_forced_formats() -> None:
    out = TtyStringIO()
    configure_logging("info", "json", out, cache_loggers=False)
    structlog.get_logger().info("x")
    assert lines(out)[0]["event"] == "x"

    out2 = io.StringIO()
    configure_logging("info", "console", out2, cache_loggers=False)
    structlog.get_logger().info("y")
    assert "\x1b[" not in out2.getvalue()  # no colour codes off a terminal
    assert "y" in out2.getvalue()


def test_idempotent() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    before = len(root.handlers)
    configure_logging("info", "json", out, cache_loggers=False)
    configure_logging("info", "json", out, cache_loggers=False)
    assert len(root.handlers) == before + 1
    logging.getLogger("lib").warning("once")
    structlog.get_logger().info("twice_configured")
    assert [r["event"] for r in lines(out)] == ["once", "twice_configured"]


def test_default_stream_is_stderr_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "json", cache_loggers=False)
    structlog.get_logger().info("to_stderr")
    captured = capsys.readouterr()
    assert captured.out == ""
    assert json.loads(captured.err)["event"] == "to_stderr"


def test_rejects_unknown_level_and_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("verbose", "json", io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", io.StringIO())


def test_librdkafka_lines_go_through_our_logs_throttled() -> None:
    """A client to a port nobody listens on: librdkafka's lines arrive as JSON records of
    logger "librdkafka", one per kind per throttle interval, never raw on stderr."""
    from confluent_kafka.admin import AdminClient

    from oml.kafka.broker import free_port
    from oml.kafka.clients import admin_config
    from oml.logs import librdkafka_logger

    out = io.StringIO()
    configure_logging("info", "json", stream=out, cache_loggers=False)
    admin = AdminClient(admin_config(f"127.0.0.1:{free_port()}"))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        admin.poll(0.2)
    records = [r for r in lines(out) if r.get("logger") == "librdkafka"]
    assert 1 <= len(records) <= 3, records
    assert "FAIL" in records[0]["event"]
    assert [type(f).__name__ for f in librdkafka_logger().filters] == ["RestatedErrors", "Throttle"]


def test_throttle_counts_what_it_suppressed() -> None:
    from oml.logs import Throttle

    throttle = Throttle(interval_s=0.2)

    def record(msg: str) -> logging.LogRecord:
        return logging.LogRecord("librdkafka", 40, "", 0, "%s [%s] %s", ("FAIL", "c", msg), None)

    assert throttle.filter(record("a"))
    assert not throttle.filter(record("b")) and not throttle.filter(record("c"))
    other = logging.LogRecord("librdkafka", 40, "", 0, "%s [%s] %s", ("REQTMOUT", "c", "x"), None)
    assert throttle.filter(other)
    time.sleep(0.25)
    later = record("d")
    assert throttle.filter(later) and later.suppressed == 2
