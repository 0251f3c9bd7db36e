"""Avro input: schemaless bodies in oml's event schema, or the Confluent wire format."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import fastavro
from fastavro.read import SchemaResolutionError

from oml.codecs import avro
from oml.codecs.batch import Parsed, dict_columns, empty_parsed
from oml.codecs.decoder import EventDecoder
from oml.codecs.errors import (
    MALFORMED,
    REGISTRY_UNAVAILABLE,
    SCHEMA_MISMATCH,
    BadMessage,
    CodecError,
)
from oml.codecs.schema_registry import HEADER_SIZE, MAGIC_BYTE, WriterSchemas
from oml.config import FieldNames

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient


class AvroEventDecoder(EventDecoder):
    """Avro input: schemaless bodies in oml's event schema, or, with a schema registry, the
    Confluent wire format with any writer schema that resolves to it (writer schemas are
    fetched once per id; other field names via ``[messages.fields]``)."""

    def __init__(
        self,
        fields: FieldNames | None = None,
        feature_names: Sequence[str] | None = None,
        registry: SchemaRegistryClient | None = None,
        **options: Any,
    ) -> None:
        """``options``: ``limits``, ``n_features``, ``clock``, as :class:`EventDecoder` takes."""
        super().__init__(fields, feature_names, **options)
        avro.check_field_names(self.fields)
        own = avro.plain_longs(avro.event_schema(self.fields))
        self._own_canonical = avro.canonical(own)
        self._writer = avro.parse(own)
        self._writers = None if registry is None else WriterSchemas(registry, self._prepare)

    def _prepare(self, writer: dict[str, Any]) -> tuple[Any, Any]:
        """(writer, reader) for fastavro: no reader (no resolution) when it is our schema."""
        plain = avro.plain_longs(writer)
        if avro.canonical(plain) == self._own_canonical:
            return self._writer, None
        name = plain.get("name") if isinstance(plain, dict) else None
        namespace = plain.get("namespace") if isinstance(plain, dict) else None
        reader = avro.event_reader_schema(self.fields, name, namespace)
        return avro.parse(plain), avro.parse(reader)

    def _parse(self, values: Sequence[bytes | None]) -> Parsed:
        read = fastavro.schemaless_reader
        stream_of = io.BytesIO
        writers = self._writers
        records: list[Any] = []
        index: list[int] = []
        errors: list[BadMessage] = []
        writer, reader = self._writer, None
        for i, value in enumerate(values):
            if value is None:
                errors.append(BadMessage(i, MALFORMED, "null value (a tombstone)"))
                continue
            body = value
            if writers is not None:
                if len(value) < HEADER_SIZE or value[0] != MAGIC_BYTE:
                    errors.append(BadMessage(i, MALFORMED, "not in the Confluent wire format"))
                    continue
                try:
                    writer, reader = writers.get(int.from_bytes(value[1:HEADER_SIZE], "big"))
                except CodecError as exc:
                    if exc.reason == REGISTRY_UNAVAILABLE:
                        raise
                    errors.append(BadMessage(i, exc.reason, str(exc)))
                    continue
                body = value[HEADER_SIZE:]
            stream = stream_of(body)
            try:
                record = read(stream, writer, reader)
            except SchemaResolutionError as exc:
                errors.append(BadMessage(i, SCHEMA_MISMATCH, f"writer schema does not fit: {exc}"))
                continue
            except Exception as exc:  # corrupt bytes surface as many exception types
                errors.append(BadMessage(i, MALFORMED, f"not Avro: {type(exc).__name__}: {exc}"))
                continue
            if stream.tell() != len(body):
                extra = len(body) - stream.tell()
                errors.append(BadMessage(i, MALFORMED, f"not Avro: {extra} bytes after the record"))
                continue
            records.append(record)
            index.append(i)
        if not records:
            p = empty_parsed(True)
            p.errors = errors
            return p
        return Parsed(
            None if not errors else index, *dict_columns(records, self.fields), errors, True
        )
