"""What a codec says when bytes are not what they should be, and every dead-letter reason.

Bad input is a value, not a crash: a batch decoder returns one :class:`BadMessage` per bad
message and decodes the rest; a single-message codec raises :class:`CodecError`, which carries
the raw bytes and the same reason.  :class:`Reason` is the one catalogue of the snake_case words
used as dead-letter reasons (the ``oml.dlq.reason`` header) and as the ``reason`` label of the
dead-letter metric: the decoder's and the service's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Reason(StrEnum):
    """Why a message went to the dead-letter topic.  A member equals its string value (and
    shows as it: ``repr(Reason.MALFORMED) == "'malformed'"``)."""

    def __repr__(self) -> str:
        return repr(self.value)

    # ---- given by the decoder (oml.codecs)
    MALFORMED = "malformed"
    """Not JSON / not Avro / not the Confluent wire format, or a null value (a tombstone)."""
    SCHEMA_MISMATCH = "schema_mismatch"
    """Well-formed, but a field has the wrong type or shape (or an unknown registry schema id)."""
    MISSING_FIELD = "missing_field"
    """A required field is absent: event id, key (unless the Kafka key stands in), or features
    for an event without a label; or the features are empty."""
    NOT_FINITE = "not_finite"
    """A feature value is NaN or infinite (or too large for a double)."""
    WRONG_FEATURE_COUNT = "wrong_feature_count"
    """List-shaped features whose length differs from the configured or agreed length."""
    BAD_LABEL = "bad_label"
    """A label that is not a boolean, an integer, a finite number or a string."""
    TOO_LARGE = "too_large"
    """The message value is longer than ``messages.max_message_bytes``: not parsed at all."""
    TOO_DEEP = "too_deep"
    """JSON nested deeper than the parser's limit (a poison pill, even inside an unused field)."""
    TOO_LONG = "too_long"
    """The event id, the key or a string label is longer than its bound (the detail says which)."""
    TOO_MANY_FEATURES = "too_many_features"
    """An event with more features than ``model.max_features``, or whose new feature names would
    take the decoder's column space past it."""
    CLOCK_SKEW = "clock_skew"
    """An event time too far from the processing clock (``messages.max_timestamp_skew_ms``)."""
    INTERNAL_ERROR = "internal_error"
    """An unexpected exception while handling this one message (the detail names its type)."""

    # ---- given by the service
    KEY_MISMATCH = "key_mismatch"
    """Feedback whose key is not the key its event was scored under."""
    UNKNOWN_EVENT = "unknown_event"
    """Feedback for an event id that is neither in the batch nor in the feature cache."""
    DUPLICATE = "duplicate"
    """A message already handled (a re-sent event id or repeated feedback)."""
    TOO_MANY_CLASSES = "too_many_classes"
    """A label that would give a classifier more classes than allowed."""

    # ---- given by a learner (oml.learner.InvalidInput reasons)
    INVALID_INPUT = "invalid_input"
    """A learner refused the input, with no more specific reason."""
    WRONG_TYPE = "wrong_type"
    """A learner was given features that are not a dict of numbers."""
    EMPTY_FEATURES = "empty_features"
    """A learner was given an empty feature set."""


MALFORMED = Reason.MALFORMED
SCHEMA_MISMATCH = Reason.SCHEMA_MISMATCH
MISSING_FIELD = Reason.MISSING_FIELD
NOT_FINITE = Reason.NOT_FINITE
WRONG_FEATURE_COUNT = Reason.WRONG_FEATURE_COUNT
BAD_LABEL = Reason.BAD_LABEL
TOO_LARGE = Reason.TOO_LARGE
TOO_DEEP = Reason.TOO_DEEP
TOO_LONG = Reason.TOO_LONG
TOO_MANY_FEATURES = Reason.TOO_MANY_FEATURES
CLOCK_SKEW = Reason.CLOCK_SKEW
INTERNAL_ERROR = Reason.INTERNAL_ERROR

REASONS = (MALFORMED, SCHEMA_MISMATCH, MISSING_FIELD, NOT_FINITE, WRONG_FEATURE_COUNT, BAD_LABEL)
"""The reasons of messages that are not in the expected format (the decoder also gives the
limit reasons ``too_large``, ``too_deep``, ``too_long``, ``too_many_features``, ``clock_skew``,
and ``internal_error``)."""

REGISTRY_UNAVAILABLE = "registry_unavailable"
"""Raised, never reported per message: the schema registry could not be asked (not bad input)."""


class BadMessage(NamedTuple):
    """One message of a batch that could not be decoded; the others decode normally.

    ``index`` is the message's position in the batch given to the decoder.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index: the name says what it is
    reason: str
    message: str


def internal_error(index: int, exc: BaseException) -> BadMessage:
    """The dead letter of a message whose handling raised ``exc`` unexpectedly."""
    return BadMessage(index, INTERNAL_ERROR, f"{type(exc).__name__}: {exc}"[:1000])


class CodecError(ValueError):
    """Bytes a codec cannot turn into a record (or a record it cannot turn into bytes).

    ``reason`` is one of :data:`REASONS` (or :data:`REGISTRY_UNAVAILABLE`); ``raw`` holds the
    bytes involved, if any.
    """

    def __init__(self, reason: str, message: str, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.raw = raw

    def __repr__(self) -> str:
        return f"CodecError({self.reason!r}, {str(self)!r})"
