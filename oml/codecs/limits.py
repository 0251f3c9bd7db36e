"""The bounds a decoder puts on hostile input, and the two pieces of state they need.

* :class:`Limits`: sizes (message bytes, id, key and string-label length, features per event),
  the column-space cap and the event-time window, from ``[messages]`` and ``[model]``.
* :class:`FeatureWidth`: the length list-shaped features must have; configured, restored from
  model state, or agreed by the majority of the lists seen (never by the first one alone).
* :class:`ColumnBudget`: the feature names admitted so far, at most ``max_features`` of them.

>>> width = FeatureWidth(quorum=3)
>>> width.judge([5, 4, 4])        # the majority so far is 4: the 5-list is refused
[0]
>>> width.known, width.judge([4, 5]), width.known
(None, [1], 4)
>>> budget = ColumnBudget(3)
>>> budget.admit(["a", "b"]), budget.admit(["c", "d"]), budget.admit(["a", "c"])
(True, False, True)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from oml.codecs.batch import NO_TIMESTAMP, Bad
from oml.codecs.errors import CLOCK_SKEW, TOO_LONG, TOO_MANY_FEATURES

if TYPE_CHECKING:
    from oml.config import FieldNames, MessagesConfig, ModelConfig

SkewPolicy = Literal["dead_letter", "clamp"]
_INT64_MAX = 2**63 - 1

DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
"""librdkafka's default ``message.max.bytes``, a little under the broker's 1,048,588, so that
a dead letter of a record at the limit (its value plus oml's headers) still fits the broker."""


@dataclass(frozen=True)
class Limits:
    """What one message may hold; None switches a bound off.  Defaults are the configuration's.

    Attributes:
        max_message_bytes: a longer value is ``too_large`` and never parsed.
        max_id_length, max_key_length, max_label_length: characters of the event id, the key
            and a string label; longer is ``too_long``.
        max_features: features of one event, and names in the decoder's column space; beyond
            either is ``too_many_features``.
        max_timestamp_skew_ms: how far ahead of the processing clock an event time may be.
        max_timestamp_age_ms: how far behind it (None, the default: any age; old events expire
            from the feature cache by themselves, and replaying a topic must keep working).
        timestamp_skew: ``dead_letter`` (``clock_skew``) or ``clamp`` (moved to the edge of the
            window and counted in ``DecodedBatch.clamped``).
    """

    max_message_bytes: int | None = DEFAULT_MAX_MESSAGE_BYTES
    max_id_length: int | None = 256
    max_key_length: int | None = 256
    max_label_length: int | None = 256
    max_features: int | None = 1_000
    max_timestamp_skew_ms: int | None = 86_400_000
    max_timestamp_age_ms: int | None = None
    timestamp_skew: SkewPolicy = "dead_letter"

    @classmethod
    def from_config(cls, messages: MessagesConfig, model: ModelConfig | None = None) -> Limits:
        """From ``[messages]`` and ``[model]`` (the default ``max_features`` without it)."""
        m = messages
        return cls(
            max_message_bytes=m.max_message_bytes,
            max_id_length=m.max_id_length,
            max_key_length=m.max_key_length,
            max_label_length=m.max_label_length,
            max_features=cls.max_features if model is None else model.max_features,
            max_timestamp_skew_ms=m.max_timestamp_skew_ms,
            max_timestamp_age_ms=m.max_timestamp_age_ms,
            timestamp_skew=m.timestamp_skew,
        )


NO_LIMITS = Limits(None, None, None, None, None, None, None)
"""Every bound off (for tests of the format alone, and for trusted producers)."""


def longer_than(values: Sequence[bytes | None], limit: int) -> list[int]:
    """The positions of the values longer than ``limit`` bytes (one C-speed pass if none is)."""
    try:
        if not values or max(map(len, values)) <= limit:  # type: ignore[arg-type]
            return []
    except TypeError:  # a None among them
        pass
    return [i for i, v in enumerate(values) if v is not None and len(v) > limit]


def check_lengths(
    limits: Limits,
    f: FieldNames,
    columns: tuple[list[str], list[str], list[Any], list[Any]],
    n_unlabeled: int,
    bad: Bad,
) -> None:
    """Id, key and string-label lengths, features per event, of the (ids, keys, labels,
    features) columns, for a format whose parser does not bound them itself.  Whole-column
    checks first."""
    ids, keys, labels, feats = columns
    for column, name, bound in (
        (ids, f.event_id, limits.max_id_length),
        (keys, f.key, limits.max_key_length),
    ):
        if bound is not None and column and max(map(len, column)) > bound:
            for i, v in enumerate(column):
                if len(v) > bound:
                    bad.setdefault(i, (TOO_LONG, f"{name!r} has {len(v)} characters, over {bound}"))
    bound = limits.max_label_length
    if bound is not None and n_unlabeled < len(labels):
        for i, y in enumerate(labels):
            if type(y) is str and len(y) > bound:
                bad.setdefault(i, (TOO_LONG, f"{f.label!r} has {len(y)} characters, over {bound}"))
    bound = limits.max_features
    if bound is not None:
        for i, x in enumerate(feats):
            if x is not None and len(x) > bound:
                bad.setdefault(i, (TOO_MANY_FEATURES, f"{len(x)} features, over {bound}"))


def check_times(limits: Limits, clock: Callable[[], float], stamps: np.ndarray, bad: Bad) -> int:
    """Event times outside the window around the processing clock: dead letters, or clamped
    in place (then counted: the return value).  ``-1`` (no time) always passes."""
    ahead, behind = limits.max_timestamp_skew_ms, limits.max_timestamp_age_ms
    if ahead is None and behind is None:
        return 0
    now = int(clock() * 1000)
    lo, hi = (0 if behind is None else now - behind), (_INT64_MAX if ahead is None else now + ahead)
    off = stamps > hi
    if lo > 0:
        off |= (stamps < lo) & (stamps != NO_TIMESTAMP)
    if not off.any():
        return 0
    rows = np.flatnonzero(off)
    if limits.timestamp_skew == "clamp":
        stamps[rows] = np.clip(stamps[rows], lo, hi)
        return len(rows)
    for i in rows.tolist():
        t = int(stamps[i])
        side = f"{t - now} ms ahead of" if t > now else f"{now - t} ms behind"
        bad.setdefault(i, (CLOCK_SKEW, f"event time {t} is {side} the processing clock"))
    return 0


class FeatureWidth:
    """The length that list-shaped features must have.

    Known when configured (``messages.feature_names`` or ``model.n_features``) or restored
    (:meth:`restore`, from model state).  Otherwise the lengths seen are votes: a batch's lists
    are judged against the majority so far (this batch included; a tie keeps the earlier
    majority, else goes to the length seen first), and the majority becomes the known width
    once it has ``quorum`` votes.  So a hostile first list can cost at most the lists of the
    batches before the quorum; it never pins the width for good.
    """

    QUORUM = 100

    def __init__(self, configured: int | None = None, quorum: int = QUORUM) -> None:
        self.configured = configured
        self.known = configured
        self.quorum = quorum
        self._votes: Counter[int] = Counter()
        self._leader: int | None = None

    @property
    def leader(self) -> int | None:
        """The length with the most votes so far (None before any list)."""
        return self._leader if self.known is None else self.known

    def restore(self, n: int) -> None:
        """Set the known width (e.g. from restored model state); a configured one must agree."""
        if self.configured is not None and n != self.configured:
            raise ValueError(
                f"a width of {n} list features, where {self.configured} are configured"
            )
        self.known = n
        self._votes.clear()
        self._leader = None

    def judge(self, lengths: Sequence[int]) -> list[int]:
        """The positions of ``lengths`` (of non-empty lists) that are the wrong length."""
        n = self.known
        if n is None:
            if not lengths:
                return []
            votes = self._votes
            votes.update(lengths)
            top = max(votes.values())
            if self._leader is None or votes[self._leader] < top:  # a tie keeps the leader
                self._leader = next(k for k, v in votes.items() if v == top)
            n = self._leader
            if top >= self.quorum:
                self.restore(n)
        return [i for i, k in enumerate(lengths) if k != n]


class ColumnBudget:
    """The feature names admitted so far: at most ``cap`` (None: no cap).

    Names already admitted always pass; :meth:`admit` takes an event's names, all or none.
    """

    def __init__(self, cap: int | None) -> None:
        self.cap = cap
        self.names: set[str] = set()

    def __len__(self) -> int:
        return len(self.names)

    def restore(self, names: Iterable[str]) -> None:
        """Admit ``names`` whatever the cap (the columns restored models already have)."""
        self.names.update(names)

    def new(self, names: Iterable[str]) -> list[str]:
        known = self.names
        return [n for n in names if n not in known]

    def refuse(self, names: list[str], xs: list[Any] | None, has: np.ndarray, skip: Bad) -> Bad:
        """Admit a batch's features row by row (``names`` for every row with features when
        ``xs`` is None, else ``xs[row]``); the rows refused, not counting those in ``skip``."""
        if self.admit(names):  # the usual case: every name known, or room for all
            return {}
        over: Bad = {}
        text = f"new feature names would take the column space past {self.cap}"
        for r in np.flatnonzero(has).tolist():
            if r not in skip and not self.admit(names if xs is None else xs[r]):
                over[r] = (TOO_MANY_FEATURES, text)
        return over

    def admit(self, names: Iterable[str]) -> bool:
        """Admit an event's names if they fit, all of them; False (and nothing added) if not."""
        new = self.new(names)
        if not new:
            return True
        if self.cap is not None and len(self.names) + len(set(new)) > self.cap:
            return False
        self.names.update(new)
        return True
