"""Small helpers the codecs share."""

from __future__ import annotations

from collections.abc import Sequence
from operator import methodcaller
from typing import Any

import numpy as np
from confluent_kafka import Message


def plain(value: Any) -> Any:
    """A numpy scalar or array as the Python value or list it holds; anything else as it is.

    >>> plain(np.float64(0.5)), plain(np.arange(2)), plain("x")
    (0.5, [0, 1], 'x')
    """
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


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
