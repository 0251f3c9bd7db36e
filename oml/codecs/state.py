"""Model state as bytes: an explicit, versioned Avro record behind a checked envelope.

``encode_model`` / ``decode_model`` are the one public pair (re-exported as ``oml.encode_model``
and ``oml.decode_model``).  The layout is::

    b"OMLS" | envelope version (1 byte) | CRC-32 of the body (4 bytes, big-endian) | Avro body

and the body follows ``oml/schemas/model_state.avsc``: algorithm name, the algorithm's own state
version, hyperparameters, feature names, label set, named arrays and the update count.  Decoding
checks every layer, so corrupted, truncated, foreign or too-new bytes raise :class:`StateError`
and nothing half-decoded is ever returned.  There is no pickle anywhere.

>>> from oml.plugins import default_registry
>>> model = default_registry().create("pa")
>>> model.learn_one({"x": 1.0}, True)
>>> again = decode_model(encode_model(model))
>>> again.predict_one({"x": 2.0}) == model.predict_one({"x": 2.0})
True
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import struct
import zlib
from importlib.resources import files
from typing import Any, cast

import fastavro
import numpy as np
from fastavro.validation import ValidationError, validate

from oml.codecs.avro import string, zigzag
from oml.learner import Learner, ModelState, StateError, plain_param

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
        from oml.plugins import default_registry

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


def encode_state(state: ModelState, extra: dict[str, Any] | None = None) -> bytes:
    """The envelope and Avro body of ``state`` (with ``extra`` in place of ``state.extra``
    when given); :class:`StateError` if it does not fit the schema."""
    if extra is None:
        extra = state.extra
    params = {k: plain_param(v) for k, v in state.params.items()}
    payload = _fast_body(state, params, extra)
    if payload is None:  # a value the hand-written writer does not know: fastavro decides
        payload = _fastavro_body(state, params, extra)
    return _HEADER.pack(MAGIC, ENVELOPE_VERSION, zlib.crc32(payload)) + payload


def _fastavro_body(state: ModelState, params: dict[str, Any], extra: dict[str, Any]) -> bytes:
    record = {
        "algorithm": state.algorithm,
        "version": state.version,
        "params": params,
        "features": list(state.features),
        "labels": list(state.labels),
        "arrays": [_array_record(name, a) for name, a in state.arrays.items()],
        "n_updates": int(state.n_updates),
        "extra": dict(extra),
    }
    body = io.BytesIO()
    try:  # validation too: fastavro would write an int out of range without a word
        validate(record, SCHEMA, raise_errors=True)
        fastavro.schemaless_writer(body, SCHEMA, record)
    except (ValidationError, ValueError, TypeError) as exc:
        raise StateError(
            f"model state of {state.algorithm!r} does not fit the schema: {exc}"
        ) from exc
    return body.getvalue()


# ---- the hand-written writer: the same bytes as fastavro's (a property test checks), about
# five times quicker, which matters because a commit writes every model that learned.

_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_INT_MIN, _INT_MAX = -(2**31), 2**31 - 1
_DOUBLE = struct.Struct("<d").pack
_DTYPE_INDEX = {"f": b"\x00", "i": b"\x02", "b": b"\x04"}  # the DType enum's symbols


_name = functools.lru_cache(maxsize=4096)(string)
"""``string`` for the texts every state repeats: names of params, features, arrays, extras."""


class _Unknown(Exception):
    """A value the hand-written writer leaves to fastavro."""


def _scalar(value: Any) -> bytes:
    """A value of the union ["null", "boolean", "long", "double", "string"] (branch 0..4)."""
    kind = type(value)
    if value is None:
        return b"\x00"
    if kind is bool:
        return b"\x02\x01" if value else b"\x02\x00"
    if kind is int and _LONG_MIN <= value <= _LONG_MAX:
        return b"\x04" + zigzag(value)
    if kind is float:
        return b"\x06" + _DOUBLE(value)
    if kind is str:
        return b"\x08" + _name(value)
    raise _Unknown


def _param(value: Any) -> bytes:
    """A params value: a scalar, or (branch 5) an array of scalars."""
    if type(value) is list:
        return b"\x0a" + _blocks([_scalar(v) for v in value])
    return _scalar(value)


def _label(value: Any) -> bytes:
    """A label: ["boolean", "long", "double", "string"], which is :func:`_scalar`'s union
    without "null": each branch index one lower, so its (zigzag) byte two lower."""
    if value is None:
        raise _Unknown
    body = _scalar(value)
    return bytes((body[0] - 2,)) + body[1:]


def _feature(value: Any) -> bytes:
    """A feature name: ["string", "long"]."""
    kind = type(value)
    if kind is str:
        return b"\x00" + _name(value)
    if kind is int and _LONG_MIN <= value <= _LONG_MAX:
        return b"\x02" + zigzag(value)
    raise _Unknown


def _blocks(items: list[bytes]) -> bytes:
    """An Avro array or map as fastavro writes it: one block (its count), then the end."""
    if not items:
        return b"\x00"
    return zigzag(len(items)) + b"".join(items) + b"\x00"


def _map(values: dict[str, Any], write: Any) -> bytes:
    items = []
    for k, v in values.items():
        if type(k) is not str:
            raise _Unknown
        items.append(_name(k) + write(v))
    return _blocks(items)


def _ndarray(name: str, a: np.ndarray) -> bytes:
    kind = a.dtype.kind
    if kind not in _DTYPE_INDEX or type(name) is not str:
        raise _Unknown
    data = np.ascontiguousarray(a, dtype=_DTYPES[_KINDS[kind]]).tobytes()
    return b"".join((
        _name(name), _DTYPE_INDEX[kind], _blocks([zigzag(n) for n in a.shape]),
        zigzag(len(data)), data,
    ))


_HEADS: dict[Any, bytes] = {}


def _head(state: ModelState, params: dict[str, Any]) -> bytes:
    """Algorithm, version, params and features: the same for all of a bank's models, so kept
    (keyed by value and type: 1 and 1.0 are written differently)."""
    try:
        key: Any = (
            state.algorithm, state.version,
            tuple((k, type(v), v) for k, v in params.items()),
            tuple((type(f), f) for f in state.features),
        )
        head = _HEADS.get(key)
    except TypeError:  # a list among the params
        key = head = None
    if head is None:
        head = b"".join((
            _name(state.algorithm), zigzag(state.version), _map(params, _param),
            _blocks([_feature(f) for f in state.features]),
        ))
        if key is not None:
            if len(_HEADS) >= 64:
                _HEADS.clear()
            _HEADS[key] = head
    return head


def _fast_body(state: ModelState, params: dict[str, Any], extra: dict[str, Any]) -> bytes | None:
    try:
        if type(state.algorithm) is not str or type(state.version) is not int:
            raise _Unknown
        if not _INT_MIN <= state.version <= _INT_MAX:
            raise _Unknown
        n_updates = int(state.n_updates)
        if not _LONG_MIN <= n_updates <= _LONG_MAX:
            raise _Unknown
        return b"".join((
            _head(state, params),
            _blocks([_label(y) for y in state.labels]),
            _blocks([_ndarray(name, a) for name, a in state.arrays.items()]),
            zigzag(n_updates),
            _map(extra, _scalar),
        ))
    except (_Unknown, AttributeError, TypeError):
        return None


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


_KINDS = {"f": "float64", "i": "int64", "b": "bool"}


def _array_record(name: str, a: np.ndarray) -> dict[str, Any]:
    kind = _KINDS.get(a.dtype.kind)
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
