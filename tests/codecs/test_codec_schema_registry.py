"""Confluent Schema Registry wire format.

Two registries: confluent-kafka's in-memory mock (``mock://`` URLs), and a tiny HTTP server on
127.0.0.1 implementing the two endpoints oml calls (register a schema, fetch a schema by id), so
the real client's HTTP path is exercised too.
"""

from __future__ import annotations

import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import fastavro
import numpy as np
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

from oml.codecs import avro
from oml.codecs.errors import MALFORMED, REGISTRY_UNAVAILABLE, SCHEMA_MISMATCH, CodecError
from oml.codecs.events import AvroEventDecoder, Event, EventEncoder, event_decoder
from oml.codecs.outputs import Metrics, MetricsCodec, OutputCodecs, PredictionCodec
from oml.codecs.schema_registry import frame, make_registry_client, unframe
from oml.config import FieldNames, load_config


def mock_config(**env: str) -> Any:
    return load_config(
        None,
        {
            "OML_MESSAGES__FORMAT": "avro",
            "OML_MESSAGES__SCHEMA_REGISTRY_URL": "mock://oml-test",
            "OML_TOPICS__INPUT": "clicks",
            **env,
        },
        {},
    )


def body(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    stream = io.BytesIO()
    fastavro.schemaless_writer(stream, fastavro.parse_schema(schema), record)
    return stream.getvalue()


# ---------------------------------------------------------------------------- mock registry


def test_events_round_trip_in_the_wire_format() -> None:
    config = mock_config()
    registry = make_registry_client(config.messages)
    assert registry is not None
    values = EventEncoder.from_config(config, registry).encode_batch(
        [Event("e1", "a", {"x": 1.0}, timestamp=7), Event("e1", "a", label="yes")]
    )
    schema_id, _ = unframe(values[0])
    assert values[0][:1] == b"\x00" and schema_id >= 1
    assert registry.get_latest_version("clicks-value").schema_id == schema_id
    batch = event_decoder(config, registry).decode_batch(values)
    assert batch.errors == []
    assert batch.event_ids == ["e1", "e1"] and batch.labels == [None, "yes"]
    assert batch.X.tolist() == [[1.0], [0.0]] and batch.timestamps.tolist() == [7, -1]


def test_a_foreign_writer_schema_resolves_to_ours() -> None:
    """A user's topic with its own record name, names, types and extra fields."""
    writer = {
        "type": "record",
        "name": "Click",
        "namespace": "com.acme",
        "fields": [
            {"name": "id", "type": "long"},
            {"name": "source", "type": "string"},
            {"name": "vec", "type": {"type": "array", "items": "float"}},
            {"name": "y", "type": ["null", "int"], "default": None},
            {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        ],
    }
    registry = SchemaRegistryClient.new_client({"url": "mock://foreign"})
    schema_id = registry.register_schema("clicks-value", Schema(json.dumps(writer), "AVRO"))
    ts_micros = 1_700_000_000_123_456
    values = [
        frame(schema_id, body(writer, {"id": 42, "source": "web", "vec": [0.5, 2.0], "y": None,
                                       "ts": ts_micros})),
        frame(schema_id, body(writer, {"id": 42, "source": "web", "vec": [0.5, 2.0], "y": 1,
                                       "ts": ts_micros})),
    ]  # fmt: skip
    fields = FieldNames(event_id="id", features="vec", label="y", timestamp="ts")
    decoder = AvroEventDecoder(fields, registry=registry)
    batch = decoder.decode_batch(values, keys=[b"user-1", b"user-2"])
    assert batch.errors == []
    assert batch.event_ids == ["42", "42"]
    assert batch.keys == ["user-1", "user-2"]  # no key field: the Kafka key is the model key
    assert batch.labels == [None, 1]
    assert batch.X.tolist() == [[0.5, 2.0], [0.5, 2.0]]
    assert batch.timestamps.tolist() == [ts_micros // 1000] * 2


def test_bad_framing_unknown_ids_and_unfit_schemas_are_per_message() -> None:
    config = mock_config()
    registry = make_registry_client(config.messages)
    assert registry is not None
    good = EventEncoder.from_config(config, registry)(Event("g", "k", {"x": 1.0}))
    json_id = registry.register_schema("other-value", Schema('{"type": "object"}', "JSON"))
    unfit = {
        "type": "record",
        "name": "Event",
        "namespace": "oml",
        "fields": [{"name": "event_id", "type": {"type": "array", "items": "int"}}],
    }
    unfit_id = registry.register_schema("unfit-value", Schema(json.dumps(unfit), "AVRO"))
    plain = body(
        avro.event_schema(FieldNames()),
        {"event_id": "p", "key": "k", "features": None, "label": 1, "timestamp": None},
    )
    assert plain[:1] != b"\x00"  # a valid body, but without the wire-format header
    values = [
        good,
        plain,
        b"\x00\x00",
        frame(999_999, b"\x00"),
        frame(json_id, b"{}"),
        frame(unfit_id, body(unfit, {"event_id": [1, 2]})),
        good,
    ]
    batch = AvroEventDecoder(registry=registry).decode_batch(values)
    assert [(e.index, e.reason) for e in batch.errors] == [
        (1, MALFORMED),
        (2, MALFORMED),
        (3, SCHEMA_MISMATCH),
        (4, SCHEMA_MISMATCH),
        (5, SCHEMA_MISMATCH),
    ]
    assert "999999" in batch.errors[2].message and "JSON" in batch.errors[3].message
    assert batch.index.tolist() == [0, 6]


def test_outputs_round_trip_in_the_wire_format() -> None:
    config = mock_config()
    registry = make_registry_client(config.messages)
    predictions = PredictionCodec.from_config(config, registry)
    values = predictions.encode_batch(
        ["e1", "e2"],
        ["a", "b"],
        [np.int64(1), None],
        classes=[0, 1],
        proba=np.array([[0.4, 0.6], [0.5, 0.5]]),
        n_updates=np.array([3, 0]),
        event_timestamps=np.array([10, -1]),
        processed_timestamp=20,
        algorithm="pa",
    )
    assert all(v[:1] == b"\x00" for v in values)
    decoded = predictions.decode_batch(values)
    assert [p.prediction for p in decoded] == [1, None]
    assert decoded[0].proba == {"0": 0.4, "1": 0.6}
    assert [p.event_timestamp for p in decoded] == [10, None]
    assert registry is not None
    assert (
        registry.get_latest_version("clicks.predictions-value").schema_id == unframe(values[0])[0]
    )
    metrics = MetricsCodec.from_config(config, registry)
    record = Metrics(None, 5, 5, accuracy=0.8, timestamp=1, algorithm="pa")
    assert metrics.decode(metrics(record)) == record
    with pytest.raises(CodecError) as info:
        metrics.decode(b"\x01nope")
    assert info.value.reason == MALFORMED and info.value.raw == b"\x01nope"


def test_registry_unavailable_raises() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    config = mock_config(
        OML_MESSAGES__SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{port}",
        OML_MESSAGES__SCHEMA_REGISTRY='{"max.retries": 0, "timeout": 2}',
    )
    registry = make_registry_client(config.messages)
    decoder = AvroEventDecoder(registry=registry)
    with pytest.raises(CodecError) as info:
        decoder.decode_batch([frame(1, b"\x00")])
    assert info.value.reason == REGISTRY_UNAVAILABLE
    with pytest.raises(CodecError) as info:
        EventEncoder.from_config(config, registry)
    assert info.value.reason == REGISTRY_UNAVAILABLE


# ---------------------------------------------------------------------------- a real HTTP registry


class TinyRegistry(ThreadingHTTPServer):
    """Just the endpoints oml calls: POST /subjects/{s}/versions, GET /schemas/ids/{id}."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.schemas: dict[int, str] = {}
        self.ids: dict[tuple[str, str], int] = {}
        self.requests: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: TinyRegistry

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        self.server.requests.append(("POST", self.path))
        match = re.fullmatch(r"/subjects/([^/?]+)/versions(\?.*)?", self.path)
        if not match:
            return self._reply(404, {"error_code": 404, "message": "not found"})
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = (match.group(1), request["schema"])
        if key not in self.server.ids:
            self.server.ids[key] = len(self.server.schemas) + 1
            self.server.schemas[self.server.ids[key]] = request["schema"]
        return self._reply(200, {"id": self.server.ids[key]})

    def do_GET(self) -> None:
        self.server.requests.append(("GET", self.path))
        match = re.fullmatch(r"/schemas/ids/(\d+)(\?.*)?", self.path)
        if not match or int(match.group(1)) not in self.server.schemas:
            return self._reply(404, {"error_code": 40403, "message": "Schema not found"})
        return self._reply(200, {"schema": self.server.schemas[int(match.group(1))]})


@pytest.fixture
def tiny_registry() -> Iterator[TinyRegistry]:
    server = TinyRegistry()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_real_client_over_http(tiny_registry: TinyRegistry) -> None:
    config = mock_config(OML_MESSAGES__SCHEMA_REGISTRY_URL=tiny_registry.url)
    producer_side = make_registry_client(config.messages)
    values = EventEncoder.from_config(config, producer_side).encode_batch(
        [Event(f"e{i}", "k", {"x": float(i)}) for i in range(50)]
    )
    assert tiny_registry.requests[0][0] == "POST"
    assert tiny_registry.requests[0][1].startswith("/subjects/clicks-value/versions")
    consumer_side = make_registry_client(config.messages)  # a fresh client: no cached schemas
    decoder = event_decoder(config, consumer_side)
    OutputCodecs.from_config(config, consumer_side)
    batch = decoder.decode_batch([*values, frame(77, b"\x00")])
    assert len(batch) == 50 and batch.X[:, 0].tolist() == [float(i) for i in range(50)]
    assert [(e.index, e.reason) for e in batch.errors] == [(50, SCHEMA_MISMATCH)]
    gets = [path for method, path in tiny_registry.requests if method == "GET"]
    assert [p.split("?")[0] for p in gets] == ["/schemas/ids/1", "/schemas/ids/77"]
    decoder.decode_batch([*values, frame(77, b"\x00")])  # both ids remembered
    assert len([m for m, _ in tiny_registry.requests if m == "GET"]) == 2
    # the output schemas were registered under their topics' subjects
    posted = {path.split("?")[0] for method, path in tiny_registry.requests if method == "POST"}
    assert "/subjects/clicks.predictions-value/versions" in posted
    assert "/subjects/clicks.metrics-value/versions" in posted
