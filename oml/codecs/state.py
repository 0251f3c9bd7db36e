"""Model state as bytes: an explicit, versioned Avro record behind a checked envelope.

``encode_model`` / ``decode_model`` are the one public pair (re-exported as ``oml.encode_model``
and ``oml.decode_model``).  The layout is::

    b"OMLS" | envelope version (1 byte) | CRC-32 of the body (4 bytes, big-endian) | Avro body

and the body follows ``oml/schemas/model_state.avsc``: algorithm name, the algorithm's own state
version, hyperparameters, feature names, label set, named arrays and the update count.  Decoding
checks every layer, so corrupted, truncated, foreign or too-new bytes raise :class:`StateError`
and nothing half-decoded is ever returned.  There is no pickle anywhere.

>>> from oml.registry import default_registry
>>> model = default_registry().create("pa")
>>> model.learn_one({"x": 1.0}, True)
>>> again = decode_model(encode_model(model))
>>> again.predict_one({"x": 2.0}) == model.predict_one({"x": 2.0})
True
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import zlib
from importlib.resources import files
from typing import Any, cast

import fastavro
import numpy as np

from oml.base import Learner, ModelState, StateError

MAGIC = b"OMLS"
SERVICE_EXTRA_PREFIX = "oml."
"""``ModelState.extra`` keys with this prefix belong to the service, not the learner."""
ENVELOPE_VERSION = 1
_HEADER = struct.Struct(">4sBI")
_DTYPES = {"float64": np.dtype("<f8"), "int64": np.dtype("<i8"), "bool": np.dtype("?")}

SCHEMA = fastavro.parse_schema(
    json.loads(files("oml").joinpath("schemas/model_state.avsc").read_text())
)


def encode_model(model: Learner) -> bytes:
    """The model's state as self-describing bytes (see module docstring for the layout)."""
    return encode_state(model.export_state())


def decode_model(data: bytes, registry: Any = None) -> Learner:
    """Rebuild a model from :func:`encode_model` bytes, or raise :class:`StateError`.

    The algorithm is looked up by name in ``registry`` (default: the installed plugins), which
    must know the state's version.
    """
    return model_from_state(decode_state(data), registry)


def model_from_state(state: ModelState, registry: Any = None) -> Learner:
    """Build the model a decoded state record describes, checking its algorithm and version."""
    if registry is None:
        from oml.registry import default_registry

        registry = default_registry()
    try:
        cls = registry.get(state.algorithm)
    except LookupError as exc:
        raise StateError(f"model state names {exc}") from exc
    if state.version > cls.state_version or state.version < 1:
        raise StateError(
            f"model state of {state.algorithm!r} has state version {state.version}; "
            f"this installation reads up to version {cls.state_version}"
        )
    service_keys = [k for k in state.extra if k.startswith(SERVICE_EXTRA_PREFIX)]
    if service_keys:  # the service's own bookkeeping travels in the record, not to the learner
        extra = {k: v for k, v in state.extra.items() if k not in service_keys}
        state = dataclasses.replace(state, extra=extra)
    try:
        return cls.import_state(state)
    except StateError:
        raise
    except Exception as exc:  # a learner that fails on its own state must not escape half-built
        raise StateError(f"{state.algorithm!r} could not load its state: {exc}") from exc


def encode_state(state: ModelState) -> bytes:
    record = {
        "algorithm": state.algorithm,
        "version": state.version,
        "params": {k: _plain(v) for k, v in state.params.items()},
        "features": list(state.features),
        "labels": list(state.labels),
        "arrays": [_array_record(name, a) for name, a in state.arrays.items()],
        "n_updates": int(state.n_updates),
        "extra": dict(state.extra),
    }
    body = io.BytesIO()
    try:
        fastavro.schemaless_writer(body, SCHEMA, record)
    except (ValueError, TypeError) as exc:
        raise StateError(
            f"model state of {state.algorithm!r} does not fit the schema: {exc}"
        ) from exc
    payload = body.getvalue()
    return _HEADER.pack(MAGIC, ENVELOPE_VERSION, zlib.crc32(payload)) + payload


def decode_state(data: bytes) -> ModelState:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise StateError(f"model state must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise StateError(
            f"model state is truncated: {len(data)} bytes, the header needs {_HEADER.size}"
        )
    magic, version, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise StateError(f"not an oml model state (starts with {data[:4]!r}, expected {MAGIC!r})")
    if version != ENVELOPE_VERSION:
        raise StateError(
            f"model state envelope version {version} is not supported "
            f"(this installation reads version {ENVELOPE_VERSION})"
        )
    payload = data[_HEADER.size :]
    if zlib.crc32(payload) != crc:
        raise StateError("model state is corrupted or truncated: checksum mismatch")
    stream = io.BytesIO(payload)
    try:
        record = cast(dict[str, Any], fastavro.schemaless_reader(stream, SCHEMA))
    except Exception as exc:
        raise StateError(f"model state body does not decode: {exc}") from exc
    if stream.tell() != len(payload):
        raise StateError(f"model state body has {len(payload) - stream.tell()} trailing bytes")
    return ModelState(
        algorithm=record["algorithm"],
        version=record["version"],
        params=record["params"],
        features=record["features"],
        labels=record["labels"],
        arrays={a["name"]: _array(a) for a in record["arrays"]},
        n_updates=record["n_updates"],
        extra=record["extra"],
    )


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _array_record(name: str, a: np.ndarray) -> dict[str, Any]:
    kind = {"f": "float64", "i": "int64", "b": "bool"}.get(a.dtype.kind)
    if kind is None:
        raise StateError(f"array {name!r} has dtype {a.dtype}; states hold float64, int64 or bool")
    data = np.ascontiguousarray(a, dtype=_DTYPES[kind]).tobytes()
    return {"name": name, "dtype": kind, "shape": list(a.shape), "data": data}


def _array(record: dict[str, Any]) -> np.ndarray:
    dtype = _DTYPES[record["dtype"]]
    shape = tuple(record["shape"])
    if any(n < 0 for n in shape) or int(np.prod(shape)) * dtype.itemsize != len(record["data"]):
        raise StateError(
            f"array {record['name']!r}: shape {shape} does not match {len(record['data'])} bytes"
        )
    return np.frombuffer(record["data"], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
