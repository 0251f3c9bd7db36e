"""JSON input: one object per message, optionally behind a Confluent JSON Schema header."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Sequence
from typing import Annotated, Any, get_origin

import msgspec

from oml.codecs.batch import FeatureStruct, Parsed, empty_parsed, struct_columns
from oml.codecs.decoder import EventDecoder
from oml.codecs.errors import (
    BAD_LABEL,
    MALFORMED,
    MISSING_FIELD,
    NOT_FINITE,
    SCHEMA_MISMATCH,
    TOO_DEEP,
    TOO_LONG,
    TOO_MANY_FEATURES,
    BadMessage,
    internal_error,
)
from oml.codecs.schema_registry import HEADER_SIZE
from oml.config import FieldNames


class JsonEventDecoder(EventDecoder):
    """JSON input (one object per message), optionally behind a Confluent JSON Schema header.

    The fast path decodes every message into a typed msgspec struct; only when that fails does
    it go message by message to find and explain the bad ones.  JSON has no NaN, but ``NaN``,
    ``Infinity`` and ``1e999`` are caught (``not_finite`` in features, ``bad_label`` as a label).
    """

    def __init__(
        self,
        fields: FieldNames | None = None,
        feature_names: Sequence[str] | None = None,
        **options: Any,
    ) -> None:
        """``options``: ``limits``, ``n_features``, ``clock``, as :class:`EventDecoder` takes."""
        super().__init__(fields, feature_names, **options)
        decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(
            self._event_struct(dict[str, float])
        )
        self._decode = decoder.decode
        # the learned fast path: features decoded straight into a struct of the names last seen
        self._fast: tuple[FeatureStruct, Callable[[Any], Any]] | None = None
        self._fast_skip = 0  # batches to go without trying the fast path
        self._fast_penalty = 1

    def _event_struct(self, features: Any, typed: bool = False) -> type:
        """The struct messages decode into; ``typed`` (the fast path) takes only string ids and
        keys and integer timestamps, which spares the type checks of the columns.

        The length bounds of :class:`~oml.codecs.limits.Limits` are msgspec constraints, checked
        while parsing at no measurable cost."""
        f, lim = self.fields, self.limits
        text_id = _bounded(str, lim.max_id_length)
        text_key = _bounded(str, lim.max_key_length)
        text_label = _bounded(str, lim.max_label_length)
        many = lim.max_features
        if features is not None and get_origin(features) is dict:
            features = _bounded(features, many)
        return msgspec.defstruct(
            "JsonEvent",
            [
                ("event_id", text_id if typed else text_id | int),
                ("key", text_key | None if typed else text_key | int | None, None),
                ("features", features | _bounded(list[float], many) | None, None),
                ("label", bool | int | float | text_label | None, None),
                ("timestamp", int | None if typed else int | float | dt.datetime | None, None),
            ],
            rename={
                "event_id": f.event_id,
                "key": f.key,
                "features": f.features,
                "label": f.label,
                "timestamp": f.timestamp,
            },
            gc=False,
        )

    def _uniform_names(self, names: list[str]) -> None:
        if self._fast is None or list(self._fast[0].names) != names:
            try:
                struct = FeatureStruct.for_names(names)
            except (ValueError, TypeError):  # msgspec refuses names with quotes or control chars
                self._fast = None
                return
            self._fast = (
                struct,
                msgspec.json.Decoder(self._event_struct(struct.type, typed=True)).decode,
            )

    def _parse(self, values: Sequence[bytes | None]) -> Parsed:
        """Try, in order: the learned fast path (features straight into a struct, when the last
        uniform batch had the same names), every message into the general struct, and only
        then message by message to find and explain the bad ones."""
        if not values:
            return empty_parsed(False)
        first = values[0]
        if first is not None and first[:1] == b"\x00":  # Confluent-framed JSON
            values = [v[HEADER_SIZE:] if v is not None and v[:1] == b"\x00" else v for v in values]
        if self._fast is not None:
            if self._fast_skip:
                self._fast_skip -= 1
            else:
                struct, decode = self._fast
                try:
                    events = list(map(decode, values))  # type: ignore[arg-type]
                except Exception:
                    # other names, or a bad message: back off (1, 2, 4... batches, up to 64)
                    self._fast_skip = self._fast_penalty
                    self._fast_penalty = min(self._fast_penalty * 2, 64)
                else:
                    self._fast_penalty = 1
                    columns = struct_columns(events)
                    return Parsed(None, *columns, [], False, struct, True, bounded=True)
        try:
            events = list(map(self._decode, values))  # type: ignore[arg-type]  # None: TypeError
        except Exception:  # found and explained message by message
            return self._parse_each(values)
        return Parsed(None, *struct_columns(events), [], False, bounded=True)

    def _parse_each(self, values: Sequence[bytes | None]) -> Parsed:
        events: list[Any] = []
        index: list[int] = []
        errors: list[BadMessage] = []
        for i, value in enumerate(values):
            if value is None:
                errors.append(BadMessage(i, MALFORMED, "null value (a tombstone)"))
                continue
            if value[:1] == b"\x00":
                value = value[HEADER_SIZE:]
            try:
                events.append(self._decode(value))
            except msgspec.ValidationError as exc:
                errors.append(BadMessage(i, self._invalid_reason(str(exc)), str(exc)))
                continue
            except (msgspec.DecodeError, TypeError) as exc:
                errors.append(BadMessage(i, *self._undecodable(value, exc)))
                continue
            except RecursionError:
                errors.append(BadMessage(i, TOO_DEEP, "JSON nested deeper than the parser allows"))
                continue
            except Exception as exc:  # never a crash: this message's dead letter
                errors.append(internal_error(i, exc))
                continue
            index.append(i)
        if not events:
            p = empty_parsed(False)
            p.errors = errors
            return p
        return Parsed(index, *struct_columns(events), errors, False, bounded=True)

    def _invalid_reason(self, text: str) -> str:
        if text.startswith("Object missing required field"):
            return MISSING_FIELD
        _, _, path = text.partition(" - at `")
        path = path.rstrip("`")
        f = self.fields
        if " of length <= " in text:
            if _at(path, f.features):
                return TOO_MANY_FEATURES
            if path in (f"$.{f.event_id}", f"$.{f.key}", f"$.{f.label}"):
                return TOO_LONG
        if _at(path, self.fields.label):
            return BAD_LABEL
        if _at(path, self.fields.features) and text.startswith("Number out of range"):
            return NOT_FINITE
        return SCHEMA_MISMATCH

    def _undecodable(self, value: Any, exc: Exception) -> tuple[str, str]:
        """Why msgspec could not parse it: non-finite numbers (stdlib json reads NaN) or not
        JSON at all."""
        try:
            obj = json.loads(value)
        except RecursionError:
            return TOO_DEEP, "JSON nested deeper than the parser allows"
        except (ValueError, TypeError):
            return MALFORMED, f"not JSON: {exc}"
        if isinstance(obj, dict):
            f = obj.get(self.fields.features)
            items: Any = ()
            if isinstance(f, dict):
                items = f.items()
            elif isinstance(f, list):
                items = enumerate(f)
            for name, v in items:
                if isinstance(v, float) and not math.isfinite(v):
                    return NOT_FINITE, f"feature {name!r} is {v}"
            y = obj.get(self.fields.label)
            if isinstance(y, float) and not math.isfinite(y):
                return BAD_LABEL, f"label is {y}"
        return MALFORMED, f"not JSON: {exc}"


def _bounded(tp: Any, max_length: int | None) -> Any:
    """``tp`` with a msgspec length constraint (None: none)."""
    return tp if max_length is None else Annotated[tp, msgspec.Meta(max_length=max_length)]


def _at(path: str, name: str) -> bool:
    head = f"$.{name}"
    return path == head or path.startswith((head + "[", head + "."))
