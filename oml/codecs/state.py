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
import math
import struct
import zlib
from collections.abc import Sequence
from importlib.resources import files
from typing import TYPE_CHECKING, Any, cast

import fastavro
import numpy as np
from fastavro.validation import ValidationError, validate

from oml.codecs.avro import string, zigzag
from oml.learner import Learner, ModelState, StateError, plain_param

if TYPE_CHECKING:
    from oml.bank import StateBatch

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


_LABELS: dict[tuple, bytes] = {}


def _labels(labels: list[Any]) -> bytes:
    """The label-set block, kept by value and type (a bank's rows share a handful)."""
    key = tuple((type(y), y) for y in labels)
    out = _LABELS.get(key)
    if out is None:
        out = _blocks([_label(y) for y in labels])
        if len(_LABELS) >= 4096:
            _LABELS.clear()
        _LABELS[key] = out
    return out


class _Const(bytes):
    """A segment of every state's bytes that is the same in all."""


class _Varints:
    """A column of longs, as zigzag varints: each value's bytes and length."""

    def __init__(self, values: np.ndarray) -> None:
        v = np.asarray(values).astype(np.int64)
        z = ((v << np.int64(1)) ^ (v >> np.int64(63))).view(np.uint64)
        self.length = np.ones(len(v), np.int64)
        self.bytes = np.empty((len(v), 10), np.uint8)
        for j in range(10):
            shift = np.uint64(7 * j)
            self.bytes[:, j] = ((z >> shift) & np.uint64(0x7F)).astype(np.uint8)
            if j:
                self.length += z >= (np.uint64(1) << shift)
        more = np.arange(10)[None, :] < (self.length[:, None] - 1)
        self.bytes |= more.astype(np.uint8) << np.uint8(7)


def _assemble(segments: list[Any], labels: list[bytes], n: int) -> list[bytes]:
    """The n states' bytes (envelope included) from their body's segments (None: the labels,
    one bytes per state): states whose labels and varint lengths agree are laid out together
    as one byte matrix, then cut into rows, each checksummed."""
    label_id: dict[bytes, int] = {}
    key = np.fromiter((label_id.setdefault(b, len(label_id)) for b in labels), np.int64, n)
    varints = [seg.length for seg in segments if isinstance(seg, _Varints)]
    for length in varints:  # one number per kind: the label id, then each length (1..10)
        key = key * 11 + length
    kinds, group_of = np.unique(key, return_inverse=True)
    label_bytes = {i: b for b, i in label_id.items()}
    out: list[bytes] = [b""] * n
    pack = _HEADER.pack
    for g, kind in enumerate(kinds.tolist()):
        rows = np.flatnonzero(group_of == g)
        parts = []
        for _ in varints:
            kind, length = divmod(kind, 11)
            parts.append(length)
        lengths = iter(parts[::-1])
        blocks = []
        for seg in segments:
            if seg is None:
                seg = _Const(label_bytes[kind])
            if isinstance(seg, _Const):
                blocks.append(np.broadcast_to(np.frombuffer(seg, np.uint8), (len(rows), len(seg))))
            elif isinstance(seg, _Varints):
                blocks.append(seg.bytes[rows, :next(lengths)])
            else:
                blocks.append(seg[rows])
        matrix = np.concatenate(blocks, axis=1)
        width = matrix.shape[1]
        data = matrix.tobytes()
        for j, row in enumerate(rows.tolist()):
            payload = data[j * width:(j + 1) * width]
            out[row] = pack(MAGIC, ENVELOPE_VERSION, zlib.crc32(payload)) + payload
    return out


def encode_states(batch: StateBatch, extras: dict[str, np.ndarray]) -> list[bytes]:
    """``encode_state(batch.state(i), {**shared extra, name: extras[name][i], ...})`` for every
    state of ``batch``, byte for byte, with the work per state cut to slicing and a few integers:
    the head is written once, each array is laid out once for the whole batch and sliced, and
    ``extras`` (int64 arrays written as longs, float64 as doubles) are packed per column.  A
    value the hand-written writer does not know sends every state through :func:`encode_state`.
    """
    n = len(batch.rows)
    shared = batch.shared
    params = {k: plain_param(v) for k, v in shared.params.items()}
    try:
        if type(shared.algorithm) is not str or type(shared.version) is not int:
            raise _Unknown
        if not _INT_MIN <= shared.version <= _INT_MAX:
            raise _Unknown
        head = _head(shared, params)
        arrays = []
        for name, a in batch.arrays.items():
            kind = a.dtype.kind
            if kind not in _DTYPE_INDEX or type(name) is not str:
                raise _Unknown
            data = np.ascontiguousarray(a, dtype=_DTYPES[_KINDS[kind]]).tobytes()
            size = len(data) // n if n else 0
            prefix = b"".join((_name(name), _DTYPE_INDEX[kind],
                               _blocks([zigzag(m) for m in a.shape[1:]]), zigzag(size)))
            arrays.append((prefix, data, size))
        arrays_head = zigzag(len(arrays)) if arrays else b"\x00"  # (an empty block is one 0)
        if any(type(k) is not str or k in extras for k in shared.extra):
            raise _Unknown  # (a shared key that a column replaces keeps its place: let
            # encode_state order it)
        shared_items = [_name(k) + _scalar(v) for k, v in shared.extra.items()]
        count = len(shared_items) + len(extras)
        extra_head = (zigzag(count) if count else b"") + b"".join(shared_items)
        # the body as segments, each a constant or a column of n values' bytes
        segments: list[Any] = [_Const(head), None, _Const(arrays_head)]  # None: the labels
        for prefix, data, size in arrays:
            segments.append(_Const(prefix))
            segments.append(np.frombuffer(data, np.uint8).reshape(n, size))
        if arrays:
            segments.append(_Const(b"\x00"))
        segments.append(_Varints(batch.n_updates))
        segments.append(_Const(extra_head))
        for k, column in extras.items():
            if column.dtype.kind == "f":
                segments.append(_Const(_name(k) + b"\x06"))
                segments.append(np.frombuffer(
                    np.ascontiguousarray(column, dtype="<f8").tobytes(), np.uint8).reshape(n, 8))
            elif column.dtype.kind in "iu":
                segments.append(_Const(_name(k) + b"\x04"))
                segments.append(_Varints(column))
            else:
                raise _Unknown
        segments.append(_Const(b"\x00"))
        return _assemble(segments, [_labels(y) for y in batch.labels], n)
    except (_Unknown, AttributeError, TypeError):
        return [
            encode_state(state, {**state.extra, **{k: c[i].item() for k, c in extras.items()}})
            for i, state in enumerate(map(batch.state, range(n)))
        ]


@dataclasses.dataclass
class StateGroup:
    """Decoded states that share one layout: ``shared`` holds what they share (algorithm,
    version, params, features, labels, the extras' names in order and the values of those
    that are not numbers), ``arrays`` and ``extras`` (the numbers) are stacked, one row per
    state of ``indices`` (positions in the values given to :func:`decode_states`).  State *i*
    is what ``decode_state`` gives for value ``indices[i]``."""

    indices: np.ndarray
    shared: ModelState
    arrays: dict[str, np.ndarray]
    n_updates: np.ndarray
    extras: dict[str, np.ndarray]

    def state(self, i: int) -> ModelState:
        extras = self.extras
        return dataclasses.replace(
            self.shared, params=dict(self.shared.params), features=list(self.shared.features),
            labels=list(self.shared.labels), arrays={k: a[i] for k, a in self.arrays.items()},
            n_updates=int(self.n_updates[i]),
            extra={k: extras[k][i].item() if k in extras else v
                   for k, v in self.shared.extra.items()},
        )


# A field of a state's bytes that varies between states of one layout: (start, size, kind,
# target); kind "varint" (a long), "data" (an array's bytes, target (name, dtype, shape)) or
# "double" (an extra); target "n_updates" or ("extra", name) for the others.
_Field = tuple[int, int, str, Any]

_GROUP_MIN = 8  # fewer states of one length are decoded one at a time
_GROUP_TRIES = 8  # layouts tried per length (each try reads the length's states once)


def _fields(state: ModelState) -> tuple[bytes, list[_Field]] | None:
    """The bytes the writer gives ``state`` and the places in them that vary between states
    of its layout (the CRC's four bytes aside); None if the writer does not know a value."""
    params = {k: plain_param(v) for k, v in state.params.items()}
    try:
        if type(state.algorithm) is not str or type(state.version) is not int:
            raise _Unknown
        parts = [_head(state, params), _labels(list(state.labels))]
        fields: list[_Field] = []
        at = _HEADER.size + len(parts[0]) + len(parts[1])

        def add(piece: bytes, kind: str | None = None, target: Any = None) -> None:
            nonlocal at
            if kind is not None:
                fields.append((at, len(piece), kind, target))
            parts.append(piece)
            at += len(piece)

        add(zigzag(len(state.arrays)) if state.arrays else b"\x00")
        for name, a in state.arrays.items():
            kind = a.dtype.kind
            if kind not in _DTYPE_INDEX or type(name) is not str:
                raise _Unknown
            dtype = _DTYPES[_KINDS[kind]]
            data = np.ascontiguousarray(a, dtype=dtype).tobytes()
            add(b"".join((_name(name), _DTYPE_INDEX[kind], _blocks([zigzag(m) for m in a.shape]),
                          zigzag(len(data)))))
            add(data, "data", (name, dtype, a.shape))
        if state.arrays:
            add(b"\x00")
        add(zigzag(int(state.n_updates)), "varint", "n_updates")
        add(zigzag(len(state.extra)) if state.extra else b"")
        for k, v in state.extra.items():
            if type(k) is not str:
                raise _Unknown
            value = _scalar(v)
            add(_name(k) + value[:1])
            if type(v) is int:
                add(value[1:], "varint", ("extra", k))
            elif type(v) is float:
                add(value[1:], "double", ("extra", k))
            else:
                add(value[1:])
        add(b"\x00")
    except (_Unknown, AttributeError, TypeError):
        return None
    return b"".join(parts), fields


def decode_states(values: Sequence[bytes]) -> tuple[list[StateGroup], list[int]]:
    """Many states at once: the groups decoded together, and the positions of the values left
    to :func:`decode_state` one at a time (which raises for a bad one).

    Values of one length whose first is a state the writer reproduces byte for byte form a
    group when every other agrees with it on every byte outside its numbers (the envelope, the
    head, the labels, the shapes, the extras' names and types) and its numbers' varints end
    where the first one's do; their CRCs are checked one by one, their numbers read as columns.
    What any check refuses goes one at a time, so the result is ``decode_state``'s, faster.
    """
    n = len(values)
    lengths = np.fromiter(map(len, values), np.int64, n)
    groups: list[StateGroup] = []
    single: list[int] = []
    order = np.argsort(lengths, kind="stable")
    bounds = np.flatnonzero(np.diff(lengths[order])) + 1
    for idx in np.split(order, bounds) if n else []:
        tries = 0  # of one length, the states of a few layouts (labels [True] or [False], ...)
        while len(idx) >= _GROUP_MIN and tries < _GROUP_TRIES:
            tries += 1
            group, rest = _decode_group(values, idx)
            if group is None:  # the first does not lead a group: it goes alone
                single.append(int(idx[0]))
                idx = idx[1:]
            else:
                groups.append(group)
                idx = np.array(rest, np.intp)
        single.extend(idx.tolist())
    single.sort()
    return groups, single


def _decode_group(values: Sequence[bytes], idx: np.ndarray) -> tuple[StateGroup | None, list[int]]:
    """The states of ``idx`` that share the first one's layout, and the positions of the
    others; None (and all of them) if the first one cannot lead a group."""
    first = int(idx[0])
    try:
        template = decode_state(values[first])
    except StateError:
        return None, idx.tolist()
    laid = _fields(template)
    if laid is None or laid[0] != values[first][_HEADER.size:]:
        return None, idx.tolist()
    fields = laid[1]
    length = len(values[first])
    positions = idx.tolist()
    M = np.frombuffer(b"".join(values[i] for i in positions), np.uint8).reshape(-1, length)
    constant = np.ones(length, bool)
    constant[5:9] = False  # the CRC
    for start, size, _, _ in fields:
        constant[start:start + size] = False
    ok = (M[:, constant] == M[0, constant]).all(axis=1)
    arrays: dict[str, np.ndarray] = {}
    extras: dict[str, np.ndarray] = {}
    n_updates = np.zeros(len(M), np.int64)
    for start, size, kind, target in fields:
        block = M[:, start:start + size]
        if kind == "data":
            name, dtype, shape = target
            arrays[name] = np.ascontiguousarray(block).view(dtype).reshape(
                (len(M), *shape)).astype(dtype.newbyteorder("="))
        elif kind == "double":
            extras[target[1]] = np.ascontiguousarray(block).view("<f8")[:, 0].astype(np.float64)
        else:  # a varint: every state's must end where the first one's does
            if size > 9:  # past 63 bits: one at a time
                return None, positions
            ok &= (block[:, :-1] >= 0x80).all(axis=1) & (block[:, -1] < 0x80)
            raw = np.zeros(len(M), np.uint64)
            for j in range(size):
                raw |= (block[:, j] & 0x7F).astype(np.uint64) << np.uint64(7 * j)
            number = (raw >> np.uint64(1)).astype(np.int64) ^ -(raw & np.uint64(1)).astype(np.int64)
            if target == "n_updates":
                n_updates = number
            else:
                extras[target[1]] = number
    crc = np.ascontiguousarray(M[:, 5:9]).view(">u4")[:, 0]  # big-endian, as the header packs
    body = _HEADER.size
    ok &= np.fromiter((zlib.crc32(memoryview(values[i])[body:]) for i in positions), np.uint32,
                      len(positions)) == crc
    if not ok.any():
        return None, positions
    keep = np.flatnonzero(ok)
    group = StateGroup(
        indices=idx[keep],
        shared=dataclasses.replace(template, arrays={}, n_updates=0),
        arrays={name: a[keep] for name, a in arrays.items()},
        n_updates=n_updates[keep],
        extras={name: a[keep] for name, a in extras.items()},
    )
    return group, idx[~ok].tolist()


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
    if any(n < 0 for n in shape) or math.prod(shape) * dtype.itemsize != len(record["data"]):
        raise StateError(
            f"array {record['name']!r}: shape {shape} does not match {len(record['data'])} bytes"
        )
    return np.frombuffer(record["data"], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
