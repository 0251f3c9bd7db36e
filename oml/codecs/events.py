"""Input events: a batch decoder that returns columns, and the encoder producers use.

An input message is either an event to score or feedback for one (JSON shown; the field names
are configurable in ``[messages.fields]``, Avro has the same shape, see ``oml/schemas``)::

    {"event_id": "e1", "key": "user-7", "features": {"x": 1.5, "y": 0}, "timestamp": 1700000000000}
    {"event_id": "e1", "key": "user-7", "label": true}

``features`` is an object of numbers or a list of numbers; ``timestamp`` is optional, epoch
milliseconds or an RFC 3339 / ISO-8601 string (``"2024-05-01T12:00:00Z"``; no offset means UTC).
A message with a non-null ``label`` is feedback (it may carry features too); one without needs
features.  ``key`` may be left out when the Kafka message key is the model key.

The modules: :mod:`oml.codecs.batch` (:class:`DecodedBatch`, the columns handed over),
:mod:`oml.codecs.decoder` (the common part: checks, limits, fault isolation),
:mod:`oml.codecs.json_events` and :mod:`oml.codecs.avro_events` (the formats); this one holds
the decoder's factory and the producers' encoder.  The output records have their own codecs,
in :mod:`oml.codecs.outputs`.

The decoder works a batch at a time and returns a :class:`DecodedBatch` of columns: ids, keys,
labels, a dense float64 feature matrix, timestamps.  Each bad message becomes one
:class:`~oml.codecs.errors.BadMessage` (index, reason, message) and the others decode normally.

>>> decoder = JsonEventDecoder()
>>> batch = decoder.decode_batch([
...     b'{"event_id": "e1", "key": "a", "features": {"x": 1.5, "y": 2}}',
...     b'{"event_id": "e2", "key": "b", "features": {"x": NaN, "y": 2}}',
...     b'{"event_id": "e0", "key": "a", "label": true}',
... ])
>>> batch.event_ids, batch.feature_names, batch.X.tolist(), batch.labels
(['e1', 'e0'], ['x', 'y'], [[1.5, 2.0], [0.0, 0.0]], [None, True])
>>> batch.errors
[BadMessage(index=1, reason='not_finite', message="feature 'x' is nan")]
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import fastavro
import msgspec
import numpy as np

from oml.codecs import avro
from oml.codecs.avro_events import AvroEventDecoder
from oml.codecs.batch import NO_TIMESTAMP, DecodedBatch, Features, Label
from oml.codecs.decoder import EventDecoder
from oml.codecs.json_events import JsonEventDecoder
from oml.codecs.limits import Limits
from oml.codecs.schema_registry import frame, make_registry_client, register
from oml.config import Config, ConfigError, FieldNames, MessagesConfig
from oml.learner import plain

if TYPE_CHECKING:
    from confluent_kafka.schema_registry import SchemaRegistryClient

__all__ = [
    "NO_TIMESTAMP",
    "AvroEventDecoder",
    "DecodedBatch",
    "Event",
    "EventDecoder",
    "EventEncoder",
    "Features",
    "JsonEventDecoder",
    "Label",
    "event_decoder",
]


class Event(msgspec.Struct, omit_defaults=True, gc=False):
    """One input message as a producer writes it (``timestamp`` in epoch milliseconds)."""

    event_id: str
    key: str
    features: Features | None = None
    label: Label | None = None
    timestamp: int | None = None


def event_decoder(
    config: Config | MessagesConfig, registry: SchemaRegistryClient | None = None
) -> EventDecoder:
    """The decoder for the configured format, field names and feature names.

    ``registry``: a schema-registry client (Avro then expects the Confluent wire format); by
    default one is made if ``schema_registry_url`` is set.  The limits are those of
    ``[messages]`` and ``[model]`` (see :class:`~oml.codecs.limits.Limits`).

    Raises :class:`~oml.config.ConfigError` if ``model.n_features`` and
    ``messages.feature_names`` disagree.
    """
    messages = config.messages if isinstance(config, Config) else config
    model = config.model if isinstance(config, Config) else None
    n_features = None if model is None else model.n_features
    names = messages.feature_names
    if names and n_features is not None and n_features != len(names):
        raise ConfigError(
            f"model.n_features is {n_features}, but messages.feature_names has {len(names)} names"
        )
    options: dict[str, Any] = {
        "limits": Limits.from_config(messages, model),
        "n_features": n_features,
    }
    if messages.format == "json":
        return JsonEventDecoder(messages.fields, names, **options)
    if registry is None:
        registry = make_registry_client(messages)
    return AvroEventDecoder(messages.fields, names, registry, **options)


# --------------------------------------------------------------------------------------------
# encoding (for producers: tests, benchmarks, examples)


def _listed(value: Any) -> Any:
    """A numpy array as the list it holds, a numpy scalar as a Python one; else as it is.

    >>> _listed(np.arange(2)), _listed(np.float64(0.5)), _listed("x")
    ([0, 1], 0.5, 'x')
    """
    return value.tolist() if isinstance(value, np.ndarray) else plain(value)


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, np.generic | np.ndarray):
        return _listed(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


class EventEncoder:
    """Turns :class:`Event` records into input messages of the configured format.

    >>> encoder = EventEncoder()
    >>> encoder(Event("e1", "a", {"x": 1.0}))
    b'{"event_id":"e1","key":"a","features":{"x":1.0}}'
    >>> JsonEventDecoder().decode_batch(encoder.encode_batch([Event("e1", "a", [1.0])])).X
    array([[1.]])
    """

    def __init__(
        self,
        fields: FieldNames | None = None,
        format: str = "json",
        *,
        registry: SchemaRegistryClient | None = None,
        subject: str | None = None,
    ) -> None:
        self.fields = f = fields or FieldNames()
        self.format = format
        if format == "json":
            self._wire = msgspec.defstruct(
                "JsonEventOut",
                [
                    ("event_id", str),
                    ("key", str),
                    ("features", Features | None, None),
                    ("label", Label | None, None),
                    ("timestamp", int | None, None),
                ],
                rename={
                    "event_id": f.event_id,
                    "key": f.key,
                    "features": f.features,
                    "label": f.label,
                    "timestamp": f.timestamp,
                },
                omit_defaults=True,
                gc=False,
            )
            self._json = msgspec.json.Encoder(enc_hook=_enc_hook)
        elif format == "avro":
            avro.check_field_names(f)
            schema = avro.event_schema(f)
            self._schema = avro.parse(schema)
            self._header = b""
            if registry is not None:
                if not subject:
                    raise ValueError("a subject is needed to register the event schema")
                self._header = frame(register(registry, subject, schema), b"")
        else:
            raise ValueError(f"unknown format {format!r}")

    @classmethod
    def from_config(
        cls, config: Config, registry: SchemaRegistryClient | None = None
    ) -> EventEncoder:
        """For the input topic of ``config`` (subject ``{input}-value`` with a registry)."""
        m = config.messages
        if registry is None and m.format == "avro":
            registry = make_registry_client(m)
        return cls(m.fields, m.format, registry=registry, subject=f"{config.topics.input}-value")

    def __call__(self, event: Event) -> bytes:
        return self.encode_batch([event])[0]

    def encode_batch(self, events: Sequence[Event]) -> list[bytes]:
        if self.format == "json":
            wire = self._wire
            records = [wire(e.event_id, e.key, e.features, e.label, e.timestamp) for e in events]
            if not records:
                return []
            out = self._json.encode_lines(records).split(b"\n")
            out.pop()
            return out
        f = self.fields
        write = fastavro.schemaless_writer
        result = []
        for e in events:
            features, label = _listed(e.features), _listed(e.label)
            stream = io.BytesIO()
            stream.write(self._header)
            write(
                stream,
                self._schema,
                {
                    f.event_id: e.event_id,
                    f.key: e.key,
                    f.features: features,
                    f.label: label,
                    f.timestamp: e.timestamp,
                },
            )
            result.append(stream.getvalue())
        return result
