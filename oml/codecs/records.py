"""The output records, predictions and prequential metrics, and the part of their codecs that
does not depend on the record: JSON or Avro, the Confluent wire format, decoding for consumers.

:mod:`oml.codecs.outputs` holds the codecs themselves.

>>> class_name(True), Prediction("e1", "a", True).proba
('true', None)
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import fastavro
import msgspec
import numpy as np

from oml.codecs import avro
from oml.codecs.errors import MALFORMED, REGISTRY_UNAVAILABLE, SCHEMA_MISMATCH, CodecError
from oml.codecs.schema_registry import WriterSchemas, frame, make_registry_client, register, unframe
from oml.config import Config
from oml.learner import plain

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

Label = bool | int | float | str


class Prediction(msgspec.Struct, gc=False):
    """One prediction record (timestamps in epoch milliseconds)."""

    event_id: str
    key: str
    prediction: Label | None
    proba: dict[str, float] | None = None
    score: float | None = None
    n_updates: int = 0
    event_timestamp: int | None = None
    processed_timestamp: int = 0
    algorithm: str = ""


class Metrics(msgspec.Struct):
    """One metrics record: ``key`` None for all keys together; ``accuracy`` for classifiers,
    ``mae`` and ``rmse`` for regressors; ``timestamp`` in epoch milliseconds."""

    key: str | None
    n: int
    window: int
    accuracy: float | None = None
    mae: float | None = None
    rmse: float | None = None
    timestamp: int = 0
    algorithm: str = ""


def class_name(label: Any) -> str:
    """A class as a ``proba`` key: ``true``/``false`` for booleans, else ``str(label)``.

    >>> class_name(True), class_name(3), class_name("spam")
    ('true', '3', 'spam')
    """
    label = plain(label)
    if isinstance(label, bool):
        return "true" if label else "false"
    return str(label)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return plain(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


class RecordCodec:
    """The format-dependent part shared by the output codecs."""

    schema_file = ""
    record_type: type[msgspec.Struct] = msgspec.Struct
    topic = ""  # the TopicsConfig field of the topic the records go to

    @classmethod
    def from_config(cls, config: Config, registry: SchemaRegistryClient | None = None) -> Any:
        """For its topic (subject ``{topic}-value`` with a registry)."""
        m = config.messages
        if registry is None and m.format == "avro":
            registry = make_registry_client(m)
        topic = getattr(config.topics, cls.topic)
        return cls(m.format, registry=registry, subject=f"{topic}-value")

    def __init__(
        self,
        format: str = "json",
        *,
        registry: SchemaRegistryClient | None = None,
        subject: str | None = None,
    ) -> None:
        if format not in ("json", "avro"):
            raise ValueError(f"unknown format {format!r}")
        self.format = format
        self._json = msgspec.json.Encoder(enc_hook=_enc_hook)
        self._json_decode = msgspec.json.Decoder(self.record_type).decode
        schema = avro.load_schema(self.schema_file)
        self._schema = avro.parse(schema)
        self._read_schema = avro.parse(avro.plain_longs(schema))
        self._fields = [f.name for f in msgspec.structs.fields(self.record_type)]
        self._header = b""
        self._writers: WriterSchemas[Any] | None = None
        if format == "avro" and registry is not None:
            if not subject:
                raise ValueError("a subject is needed to register the schema")
            self._header = frame(register(registry, subject, schema), b"")
            self._writers = WriterSchemas(registry, lambda s: avro.parse(avro.plain_longs(s)))

    # ---- encoding
    def encode_records(self, records: Sequence[msgspec.Struct]) -> list[bytes]:
        """One message value per record."""
        if not records:
            return []
        if self.format == "json":
            out = self._json.encode_lines(records).split(b"\n")
            out.pop()
            return out
        to_dict = msgspec.structs.asdict
        return self._avro([to_dict(r) for r in records])

    def __call__(self, record: msgspec.Struct) -> bytes:
        return self.encode_records([record])[0]

    def _avro(self, dicts: list[dict[str, Any]]) -> list[bytes]:
        """Avro bodies written one after another into one buffer, then cut apart."""
        stream = io.BytesIO()
        write, schema, header = fastavro.schemaless_writer, self._schema, self._header
        ends = []
        try:
            for d in dicts:
                stream.write(header)
                write(stream, schema, d)
                ends.append(stream.tell())
        except (ValueError, TypeError, AttributeError) as exc:
            raise CodecError(SCHEMA_MISMATCH, f"record does not fit the schema: {exc}") from exc
        buffer = stream.getbuffer()
        starts = [0, *ends[:-1]]
        out = [bytes(buffer[a:b]) for a, b in zip(starts, ends, strict=True)]
        del buffer
        return out

    # ---- decoding (for consumers of the output topics: tests, benchmarks, dashboards)
    def decode(self, value: bytes) -> Any:
        """One record from a message value; :class:`CodecError` if it is not one."""
        if self.format == "json":
            try:
                return self._json_decode(value)
            except msgspec.ValidationError as exc:
                raise CodecError(SCHEMA_MISMATCH, str(exc), value) from exc
            except msgspec.DecodeError as exc:
                raise CodecError(MALFORMED, str(exc), value) from exc
        schema, body = self._read_schema, value
        if self._writers is not None:
            schema_id, body = unframe(value)
            try:
                schema = self._writers.get(schema_id)
            except CodecError as exc:
                if exc.reason != REGISTRY_UNAVAILABLE:
                    exc.raw = value
                raise
        try:
            record: Any = fastavro.schemaless_reader(io.BytesIO(body), schema, None)
        except Exception as exc:  # corrupt bytes surface as many exception types
            raise CodecError(MALFORMED, f"not Avro: {exc}", value) from exc
        return self.record_type(**{k: record.get(k) for k in self._fields})

    def decode_batch(self, values: Sequence[bytes]) -> list[Any]:
        return [self.decode(v) for v in values]
