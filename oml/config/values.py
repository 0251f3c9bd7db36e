"""The typed structure of :class:`~oml.config.settings.Config`, and one value checked against it.

Every source (TOML file, environment, flags) names a setting by its path, ``("kafka",
"group_id")``; :func:`try_lookup` finds the dataclass field a path names, and :func:`convert`
checks a value against that field's annotation and limits, or parses it from text.

>>> dotted_name(("processing", "batch_size")), lookup(("processing", "batch_size"))[1]
('processing.batch_size', <class 'int'>)
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
import types
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from oml.config.settings import PARAMS, Config, ConfigError

Path = tuple[str, ...]
"""A setting's place in the structure: ``("kafka", "librdkafka")``."""


# ---- the structure


@cache
def type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a settings dataclass (cached)."""
    return get_type_hints(cls)


def is_section(tp: Any) -> bool:
    """Whether an annotation is a section (a nested settings dataclass), not a setting."""
    return isinstance(tp, type) and is_dataclass(tp)


def try_lookup(path: Path) -> tuple[Any, Any] | None:
    """The (dataclass field, annotation) that ``path`` names, or None if it names nothing."""
    cls: Any = Config
    for i, part in enumerate(path):
        if not is_section(cls):
            return None
        known = {f.name: f for f in fields(cls)}
        if part not in known:
            return None
        tp = type_hints(cls)[part]
        if i == len(path) - 1:
            return known[part], tp
        cls = tp
    return None


def lookup(path: Path) -> tuple[Any, Any]:
    """:func:`try_lookup` for a path known to exist."""
    found = try_lookup(path)
    assert found is not None, path
    return found


def dotted_name(path: Path) -> str:
    """A path as users write it: ``kafka.group_id``."""
    return ".".join(path)


def suggest(name: str, known: Mapping[str, Any], fmt: Any = None) -> str:
    """The tail of an "unknown key" message: the closest known name, else all of them."""
    close = difflib.get_close_matches(name, list(known), n=1)
    if not close:
        return f" (known: {', '.join(known)})"
    return f" (did you mean {(fmt(close[0]) if fmt else close[0])!r}?)"


def leaf_paths(cls: type = Config, prefix: Path = ()) -> list[Path]:
    """The path of every setting under ``cls`` (sections are walked, not listed)."""
    out: list[Path] = []
    hints = type_hints(cls)
    for f in fields(cls):
        if is_section(hints[f.name]):
            out.extend(leaf_paths(hints[f.name], (*prefix, f.name)))
        else:
            out.append((*prefix, f.name))
    return out


# ---- values


def read_table(value: Any, kind: str, where: str) -> dict[str, Any]:
    """A whole free-form table: a mapping, or text holding a JSON object or TOML inline table."""
    if isinstance(value, str):
        parsed = parse_value(value)
        if not isinstance(parsed, dict):
            raise ConfigError(f"{where}: expected a JSON object or TOML table, got {value!r}")
        value = parsed
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
    return {str(k): table_value(v, kind, f"{where}.{k}", text=False) for k, v in value.items()}


def table_value(value: Any, kind: str, where: str, text: bool) -> Any:
    """One entry of a free-form table of ``kind`` (:data:`~oml.config.settings.SETTINGS` or
    :data:`~oml.config.settings.PARAMS`), parsed from text if ``text``."""
    if kind == PARAMS:
        return parse_value(value) if text else value
    if isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not a finite number")
        return value
    raise ConfigError(f"{where}: expected a string, number or boolean, got {type(value).__name__}")


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def convert(value: Any, tp: Any, f: Any, where: str, text: bool) -> Any:
    """Check (``text=False``) or parse (``text=True``) one value against its annotation."""
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None or (text and value.strip() in ("", "none", "null")):
            return None
        if len(args) == 1:
            return convert(value, args[0], f, where, text)
        raise ConfigError(f"{where}: unsupported union type")  # pragma: no cover
    if value is None:
        raise ConfigError(f"{where}: a value is required")
    if origin is Literal:
        choices = get_args(tp)
        if isinstance(value, str) and value.strip().lower() in choices:
            return value.strip().lower()
        raise ConfigError(f"{where}: expected one of {', '.join(choices)}, got {value!r}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if text and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if text:
            try:
                value = int(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return _check_range(value, f, where)
    if tp is float:
        if text:
            try:
                value = float(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return _check_range(float(value), f, where)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if len(value) < f.metadata.get("min_len", 0):
            raise ConfigError(f"{where}: must not be empty")
        return value
    if origin is tuple:
        if text:
            stripped = value.strip()
            if stripped.startswith("["):
                value = parse_value(stripped)
            else:
                value = [v.strip() for v in stripped.split(",") if v.strip()]
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if len(set(value)) != len(value):
            raise ConfigError(f"{where}: names must be distinct")
        return tuple(value)
    raise ConfigError(f"{where}: unsupported type {tp!r}")  # pragma: no cover


def _check_range(value: int | float, f: Any, where: str) -> Any:
    low, high = f.metadata.get("min"), f.metadata.get("max")
    if low is not None and value < low:
        raise ConfigError(f"{where}: must be at least {low}, got {value}")
    if high is not None and value > high:
        raise ConfigError(f"{where}: must be at most {high}, got {value}")
    return value


def parse_value(text: Any) -> Any:
    """A value written on a command line or in an environment variable.

    JSON or a TOML value if it parses as one, else the text itself:

    >>> parse_value("0.5"), parse_value("2"), parse_value('["a","b"]'), parse_value("hinge")
    (0.5, 2, ['a', 'b'], 'hinge')
    >>> parse_value("true"), parse_value("{C = 1}")
    (True, {'C': 1})
    """
    if not isinstance(text, str):
        return text

    def reject(constant: str) -> Any:
        raise ValueError(constant)

    try:
        return json.loads(text, parse_constant=reject)
    except ValueError:
        pass
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
