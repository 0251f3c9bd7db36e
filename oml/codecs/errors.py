"""What a codec says when bytes are not what they should be.

Bad input is a value, not a crash: a batch decoder returns one :class:`BadMessage` per bad
message and decodes the rest; a single-message codec raises :class:`CodecError`, which carries
the raw bytes and the same reason.  Reasons are snake_case words, used as dead-letter reasons and
metric labels.
"""

from __future__ import annotations

from typing import NamedTuple

MALFORMED = "malformed"
"""Not JSON / not Avro / not the Confluent wire format, or a null value (a tombstone)."""
SCHEMA_MISMATCH = "schema_mismatch"
"""Well-formed, but a field has the wrong type or shape (or an unknown registry schema id)."""
MISSING_FIELD = "missing_field"
"""A required field is absent: event id, key (unless the Kafka key stands in), or features for
an event without a label."""
NOT_FINITE = "not_finite"
"""A feature value is NaN or infinite (or too large for a double)."""
WRONG_FEATURE_COUNT = "wrong_feature_count"
"""List-shaped features whose length differs from the configured or first-seen length."""
BAD_LABEL = "bad_label"
"""A label that is not a boolean, an integer, a finite number or a string."""

REASONS = (MALFORMED, SCHEMA_MISMATCH, MISSING_FIELD, NOT_FINITE, WRONG_FEATURE_COUNT, BAD_LABEL)

REGISTRY_UNAVAILABLE = "registry_unavailable"
"""Raised, never reported per message: the schema registry could not be asked (not bad input)."""


class BadMessage(NamedTuple):
    """One message of a batch that could not be decoded; the others decode normally.

    ``index`` is the message's position in the batch given to the decoder.
    """

    index: int  # type: ignore[assignment]  # shadows tuple.index: the name says what it is
    reason: str
    message: str


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
