"""Small helpers the codecs share."""

from __future__ import annotations

from collections.abc import Sequence
from operator import methodcaller
from typing import Any

import numpy as np
from confluent_kafka import Message


def message_column(messages: Sequence[Any], method: str) -> list[Any]:
    """``m.<method>()`` of each message.

    Through ``confluent_kafka.Message``'s own method descriptor, about four times quicker per
    message than ``operator.methodcaller``, which serves objects that only look like messages
    (test doubles).
    """
    try:
        return list(map(getattr(Message, method), messages))
    except TypeError:
        return list(map(methodcaller(method), messages))


def message_ints(messages: Sequence[Any], method: str, dtype: Any = np.int64) -> np.ndarray:
    """``m.<method>()`` of each message as an integer array (partitions, offsets)."""
    return np.array(message_column(messages, method), dtype=dtype)
