"""Confluent Schema Registry support: the client, the wire format, writer schemas by id.

The Confluent wire format puts a 5-byte header before the body: a magic byte 0 and the
schema id as a 4-byte big-endian integer.  oml frames its Avro output that way when a registry
is configured, and reads framed Avro (and framed JSON: JSON Schema serializers use the same
header) from its input.  Writer schemas are fetched once per id and kept.

>>> frame(7, b"body")
b'\\x00\\x00\\x00\\x00\\x07body'
>>> unframe(frame(7, b"body"))
(7, b'body')
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from oml.codecs.errors import MALFORMED, REGISTRY_UNAVAILABLE, SCHEMA_MISMATCH, CodecError
from oml.config import MessagesConfig

if TYPE_CHECKING:  # the client library takes a tenth of a second to import: only when used
    from confluent_kafka.schema_registry import SchemaRegistryClient

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")
HEADER_SIZE = HEADER.size

T = TypeVar("T")


def make_registry_client(messages: MessagesConfig) -> SchemaRegistryClient | None:
    """The client for ``messages.schema_registry_url`` (None if no URL is configured).

    ``messages.schema_registry`` settings (``basic.auth.user.info``...) are passed as written; a
    ``mock://`` URL gives confluent-kafka's in-memory mock registry.
    """
    if not messages.schema_registry_url:
        return None
    from confluent_kafka.schema_registry import SchemaRegistryClient

    conf: dict[str, Any] = {**messages.schema_registry, "url": messages.schema_registry_url}
    return SchemaRegistryClient.new_client(conf)


def frame(schema_id: int, body: bytes) -> bytes:
    """``body`` behind the Confluent header for ``schema_id``."""
    return HEADER.pack(MAGIC_BYTE, schema_id) + body


def unframe(value: bytes) -> tuple[int, bytes]:
    """The schema id and the body of a Confluent-framed value; :class:`CodecError` if not one."""
    if len(value) < HEADER_SIZE or value[0] != MAGIC_BYTE:
        raise CodecError(
            MALFORMED, "not in the Confluent wire format (magic byte 0, 4-byte schema id)", value
        )
    return int.from_bytes(value[1:HEADER_SIZE], "big"), value[HEADER_SIZE:]


def register(client: SchemaRegistryClient, subject: str, schema: dict[str, Any]) -> int:
    """Register an Avro schema under ``subject`` (idempotent) and return its id."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryError

    try:
        return int(client.register_schema(subject, Schema(json.dumps(schema), "AVRO")))
    except SchemaRegistryError as exc:
        reason = SCHEMA_MISMATCH if exc.http_status_code in (409, 422) else REGISTRY_UNAVAILABLE
        raise CodecError(reason, f"cannot register the schema under {subject!r}: {exc}") from exc
    except Exception as exc:  # connection errors come as requests/httpx exceptions
        raise CodecError(
            REGISTRY_UNAVAILABLE, f"cannot reach the schema registry to register {subject!r}: {exc}"
        ) from exc


class WriterSchemas(Generic[T]):
    """Writer schemas by id, each fetched once and turned into whatever the codec needs.

    ``get`` raises :class:`CodecError` with reason ``schema_mismatch`` for an id the registry
    does not know or a schema that is not Avro (remembered, so a bad batch asks only once), and
    ``registry_unavailable`` when the registry cannot be asked (not remembered: the caller
    should retry the batch or stop; it is not the message's fault).
    """

    def __init__(self, client: SchemaRegistryClient, prepare: Callable[[dict[str, Any]], T]):
        self._client = client
        self._prepare = prepare
        self._known: dict[int, T | CodecError] = {}

    def get(self, schema_id: int) -> T:
        known = self._known.get(schema_id)
        if known is None:
            known = self._known[schema_id] = self._fetch(schema_id)
        if isinstance(known, CodecError):
            raise known
        return known

    def _fetch(self, schema_id: int) -> T | CodecError:
        from confluent_kafka.schema_registry import SchemaRegistryError

        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return CodecError(SCHEMA_MISMATCH, f"the registry has no schema id {schema_id}")
            raise CodecError(
                REGISTRY_UNAVAILABLE, f"cannot fetch schema id {schema_id}: {exc}"
            ) from exc
        except Exception as exc:
            raise CodecError(
                REGISTRY_UNAVAILABLE, f"cannot fetch schema id {schema_id}: {exc}"
            ) from exc
        if schema is None:
            return CodecError(SCHEMA_MISMATCH, f"the registry has no schema id {schema_id}")
        kind = (schema.schema_type or "AVRO").upper()
        if kind != "AVRO":
            return CodecError(SCHEMA_MISMATCH, f"schema id {schema_id} is {kind}, not AVRO")
        try:
            return self._prepare(json.loads(schema.schema_str or ""))
        except (ValueError, TypeError, KeyError) as exc:
            return CodecError(SCHEMA_MISMATCH, f"schema id {schema_id} cannot be used: {exc}")
