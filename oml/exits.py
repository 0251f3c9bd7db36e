"""The ``oml`` command's exit codes, and which error means which (documented in the README).

Every error a user can cause or meet ends the command with one line on stderr, ``oml: ...``,
and one of these codes; a traceback means a bug in oml.
"""

from __future__ import annotations

from enum import IntEnum


class Exit(IntEnum):
    OK = 0
    FAILED = 1
    """the command ran and failed: a restore error, a missed bench target, no such model key"""
    USAGE = 2
    """a mistake in the command line or the configuration (unknown algorithm, bad parameter)"""
    DATA = 3
    """a data set could not be found, fetched, verified or parsed"""
    KAFKA = 4
    """the cluster could not be reached (or the embedded broker could not start)"""
    TOPIC = 5
    """the input topic is missing, or an existing changelog does not fit"""
    FENCED = 6
    """another instance took this one's identity (the same kafka.instance_id): it must stop"""
    BROKER_LOST = 7
    """the cluster lost the service's topics or committed offsets (restarted empty, a topic
    deleted): the state in memory no longer matches the log"""
    INTERRUPTED = 130
    """Ctrl-C (SIGINT) before the command finished"""


class CommandError(Exception):
    """A failure with its exit code, reported by the CLI as one line."""

    def __init__(self, message: str, code: Exit = Exit.FAILED) -> None:
        super().__init__(message)
        self.code = code


def exit_code(exc: BaseException) -> Exit | None:
    """The documented code for ``exc``, or None for an unexpected error (a bug: traceback).

    >>> from oml.kafka.topics import TopicMissing
    >>> exit_code(TopicMissing("no input")), exit_code(KeyError("x"))
    (<Exit.TOPIC: 5>, None)
    """
    from oml.bench.datasets import DatasetError
    from oml.config import ConfigError
    from oml.kafka.broker import BrokerError
    from oml.kafka.topics import TopicError, TopicMismatch, TopicMissing
    from oml.plugins import UnknownAlgorithm

    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, ConfigError | UnknownAlgorithm):
        return Exit.USAGE
    if isinstance(exc, DatasetError):
        return Exit.DATA
    if isinstance(exc, TopicMissing | TopicMismatch):
        return Exit.TOPIC
    if isinstance(exc, TopicError | BrokerError):
        return Exit.KAFKA
    return None


def one_line(exc: BaseException) -> str:
    """The error's message on one line (a multi-line message joined with "; ").

    >>> one_line(ValueError("two problems:\\n- a\\n- b"))
    'two problems:; a; b'
    """
    lines = [line.strip().removeprefix("- ") for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines) or type(exc).__name__
