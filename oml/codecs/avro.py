"""The Avro schemas oml ships (``oml/schemas/*.avsc``) and what the codecs derive from them.

>>> [f["name"] for f in event_schema(FieldNames(event_id="id"))["fields"]]
['id', 'key', 'features', 'label', 'timestamp']
>>> plain_longs({"type": "long", "logicalType": "timestamp-millis"})
'long'
"""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from importlib.resources import files
from typing import Any

import fastavro

from oml.config import FieldNames

EVENT = "event.avsc"
PREDICTION = "prediction.avsc"
METRICS = "metrics.avsc"

_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


@cache
def _load(name: str) -> str:
    return files("oml").joinpath("schemas", name).read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """A shipped schema as a fresh dict (``event.avsc``, ``prediction.avsc``, ``metrics.avsc``)."""
    schema: dict[str, Any] = json.loads(_load(name))
    return schema


def check_field_names(fields: FieldNames) -> None:
    """Avro field names must be ``[A-Za-z_][A-Za-z0-9_]*``; raise ValueError otherwise."""
    for attr in ("event_id", "key", "features", "label", "timestamp"):
        name = getattr(fields, attr)
        if not _AVRO_NAME.match(name):
            raise ValueError(
                f"messages.fields.{attr} = {name!r} is not a valid Avro field name "
                "(letters, digits and _, not starting with a digit)"
            )


def event_schema(fields: FieldNames) -> dict[str, Any]:
    """``event.avsc`` with the configured field names: what an oml producer writes."""
    schema = load_schema(EVENT)
    for f in schema["fields"]:
        f["name"] = getattr(fields, f["name"])
    return schema


def event_reader_schema(
    fields: FieldNames, name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The schema oml reads events with when the writer's schema is someone else's.

    Looser than ``event.avsc`` so that more writer schemas resolve to it: the id may be a long,
    the key may be absent (the Kafka message key is used), and the record takes the writer's
    name (Avro resolution requires equal record names).  Timestamps are plain longs.
    """
    schema = plain_longs(event_schema(fields))
    by_name = {f["name"]: f for f in schema["fields"]}
    by_name[fields.event_id]["type"] = ["string", "long"]
    by_name[fields.key]["type"] = ["null", "string", "long"]
    by_name[fields.key]["default"] = None
    if name is not None:
        schema["name"] = name
        if namespace is None:
            schema.pop("namespace", None)
        else:
            schema["namespace"] = namespace
    return schema


def plain_longs(schema: Any) -> Any:
    """A copy of ``schema`` where ``timestamp-millis`` longs are plain longs.

    Same bytes, same meaning (milliseconds): reading them as ints skips fastavro's conversion to
    ``datetime`` and back, which is most of the decoding time of a small record.
    """
    if isinstance(schema, dict):
        if schema.get("type") == "long" and schema.get("logicalType") in (
            "timestamp-millis",
            "local-timestamp-millis",
        ):
            return "long"
        return {k: plain_longs(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [plain_longs(s) for s in schema]
    return copy.copy(schema)


_ONE_BYTE = [bytes([i]) for i in range(128)]


def zigzag(n: int) -> bytes:
    """An Avro ``int``/``long``: zigzag, then a little-endian base-128 varint.

    >>> zigzag(0), zigzag(-1), zigzag(1), zigzag(64)
    (b'\\x00', b'\\x01', b'\\x02', b'\\x80\\x01')
    """
    n = (n << 1) ^ (n >> 63)
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def string(text: str) -> bytes:
    """An Avro ``string``: its UTF-8 length as a long, then the bytes."""
    data = text.encode("utf-8")
    return zigzag(len(data)) + data


def parse(schema: dict[str, Any]) -> Any:
    """fastavro's parsed form of ``schema`` (its own named-type table each time)."""
    return fastavro.parse_schema(schema, named_schemas={})


def canonical(schema: Any) -> str:
    """The Avro Parsing Canonical Form, to tell whether two schemas are the same."""
    return str(fastavro.schema.to_parsing_canonical_form(schema))
