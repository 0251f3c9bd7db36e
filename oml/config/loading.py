"""Building the configuration from its sources: defaults < TOML file < ``OML_*`` environment <
overrides (the command line's flags).

Each source becomes a layer, a mapping from a setting's path to a checked value; the layers are
merged in order (free-form tables key by key) and the dataclasses built from the result.
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from oml.config.flags import FLAG_FOR_PATH, overrides_from_args
from oml.config.settings import PARAMS, Config, ConfigError
from oml.config.values import (
    Path,
    convert,
    dotted_name,
    is_section,
    leaf_paths,
    lookup,
    read_table,
    suggest,
    table_value,
    try_lookup,
    type_hints,
)

ENV_PREFIX = "OML_"
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "OML_BOOTSTRAP_SERVERS": ("kafka", "bootstrap_servers"),
    "OML_KAFKA_CONFIG": ("kafka", "librdkafka"),
}
"""Short names, shared with the test suite's way of naming an external cluster."""
ENV_CONFIG_FILE = "OML_CONFIG"
ENV_IGNORED_PREFIX = "OML_TEST_"
ENV_IGNORED = frozenset({"OML_DATA_DIR", "OML_CACHE_DIR"})
"""Variables of other oml commands (``oml bench``'s data sets), not service settings."""


def load_config(
    path: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Build the configuration: defaults < TOML file < ``OML_*`` environment < overrides.

    ``path``: the TOML file, or None to use ``env["OML_CONFIG"]`` if set, else no file.
    ``env``: usually ``os.environ``.
    ``overrides``: dotted paths to values (``{"kafka.group_id": "g"}``), as made from the
    command line by :func:`overrides_from_args`; nested dicts are accepted too.  String values
    are parsed like environment values; free-form tables (``model.params``,
    ``kafka.librdkafka``) are dicts and merge key by key with the other sources.

    Raises :class:`ConfigError` naming the source and the key.
    """
    if path is None:
        path = env.get(ENV_CONFIG_FILE) or None
    layers: list[dict[Path, Any]] = []
    if path is not None:
        layers.append(_file_layer(os.fspath(path)))
    layers.append(_env_layer(env))
    layers.append(_override_layer(overrides or {}))

    merged: dict[Path, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if isinstance(value, dict) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    try:
        return _build(Config, (), merged)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:  # pragma: no cover - a bug in the checks above
        raise ConfigError(str(exc)) from exc


def _build(cls: type, prefix: Path, values: Mapping[Path, Any]) -> Any:
    hints = type_hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        path = (*prefix, f.name)
        if is_section(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], path, values)
        elif path in values:
            kwargs[f.name] = values[path]
    return cls(**kwargs)


# ---- the three kinds of source


def _file_layer(path: str) -> dict[Path, Any]:
    source = f"file {path}"
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    out: dict[Path, Any] = {}
    _walk_mapping(data, Config, (), source, out)
    return out


def _walk_mapping(
    data: Mapping[str, Any], cls: type, prefix: Path, source: str, out: dict[Path, Any]
) -> None:
    hints = type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for name, value in data.items():
        path = (*prefix, name)
        if name not in known:
            raise ConfigError(f"{source}: unknown key {dotted_name(path)!r}{suggest(name, known)}")
        tp = hints[name]
        if is_section(tp):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: {dotted_name(path)} must be a table")
            _walk_mapping(value, tp, path, source, out)
        elif known[name].metadata.get("table"):
            out[path] = read_table(
                value, known[name].metadata["table"], f"{source}: {dotted_name(path)}"
            )
        else:
            out[path] = convert(
                value, tp, known[name], f"{source}: {dotted_name(path)}", text=False
            )


def _env_layer(env: Mapping[str, str]) -> dict[Path, Any]:
    out: dict[Path, Any] = {}
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name == ENV_CONFIG_FILE:
            continue
        if name.startswith(ENV_IGNORED_PREFIX) or name in ENV_IGNORED:
            continue
        text = env[name]
        source = f"env {name}"
        if name in ENV_ALIASES:
            path = ENV_ALIASES[name]
            f, tp = lookup(path)
            kind = f.metadata.get("table")
            if kind:  # a JSON object; entries from OML_KAFKA__LIBRDKAFKA... win over it
                out[path] = {**read_table(text, kind, source), **out.get(path, {})}
                continue
            canonical = _env_name(path)
            if canonical in env and env[canonical] != text:
                raise ConfigError(f"{source}: conflicts with {canonical}; set only one")
            out[path] = convert(text, tp, f, source, text=True)
            continue
        parts = name[len(ENV_PREFIX) :].split("__")
        cls: type = Config
        prefix: Path = ()
        while True:
            if not parts or not parts[0]:
                raise ConfigError(f"{source}: not a setting name")
            part = parts.pop(0)
            known = {f.name: f for f in fields(cls)}
            lowered = part.lower()
            if lowered not in known:
                dotted = dotted_name((*prefix, lowered))
                hint = suggest(lowered, known, fmt=lambda n, p=prefix: dotted_name((*p, n)))
                raise ConfigError(f"{source}: unknown setting {dotted!r}{hint}")
            f = known[lowered]
            tp = type_hints(cls)[lowered]
            path = (*prefix, lowered)
            if is_section(tp):
                if not parts:
                    raise ConfigError(f"{source}: {dotted_name(path)} is a section, name a setting")
                cls, prefix = tp, path
                continue
            kind = f.metadata.get("table")
            if kind and parts:
                entry = _env_table_key(parts, kind)
                where = f"{source}: {dotted_name(path)}"
                value = table_value(text, kind, where, text=True)
                out.setdefault(path, {})[entry] = value
            elif kind:
                out[path] = {**out.get(path, {}), **read_table(text, kind, source)}
            elif parts:
                raise ConfigError(f"{source}: {dotted_name(path)} has no setting {parts[0]!r}")
            else:
                out[path] = convert(text, tp, f, source, text=True)
            break
    return out


def _env_table_key(parts: list[str], kind: str) -> str:
    if kind == PARAMS:
        return "__".join(parts)
    # librdkafka and schema-registry names are lower-case words separated by dots
    return ".".join(p.lower().replace("_", ".") for p in parts if p)


def _override_layer(overrides: Mapping[str, Any]) -> dict[Path, Any]:
    flat: dict[Path, Any] = {}

    def flatten(prefix: Path, mapping: Mapping[str, Any]) -> None:
        for key, value in mapping.items():
            path = (*prefix, *str(key).split("."))
            target = try_lookup(path)
            if isinstance(value, Mapping) and (target is None or is_section(target[1])):
                flatten(path, value)
            else:
                flat[path] = value

    flatten((), overrides)
    out: dict[Path, Any] = {}
    for path, value in flat.items():
        flag = FLAG_FOR_PATH.get(path)
        source = f"flag {flag}" if flag else f"override {dotted_name(path)}"
        found = try_lookup(path)
        if found is None:
            # "kafka.librdkafka.sasl.mechanism": an entry of a free-form table
            for cut in range(len(path) - 1, 0, -1):
                table = try_lookup(path[:cut])
                if table is not None and table[0].metadata.get("table"):
                    kind = table[0].metadata["table"]
                    where = f"{source}: {dotted_name(path)}"
                    entry = table_value(value, kind, where, text=isinstance(value, str))
                    out.setdefault(path[:cut], {})[".".join(path[cut:])] = entry
                    break
            else:
                raise ConfigError(f"{source}: unknown setting {dotted_name(path)!r}")
            continue
        f, tp = found
        kind = f.metadata.get("table")
        if is_section(tp):
            raise ConfigError(f"{source}: {dotted_name(path)} is a section, name a setting")
        if kind:
            out[path] = {**out.get(path, {}), **read_table(value, kind, source)}
        else:
            out[path] = convert(value, tp, f, source, text=isinstance(value, str))
    return out


def _env_name(path: Path) -> str:
    return ENV_PREFIX + "__".join(p.upper() for p in path)


def env_names() -> list[str]:
    """Every environment variable a setting can be read from (free-form tables take suffixes).

    >>> "OML_PROCESSING__BATCH_SIZE" in env_names()
    True
    """
    return [_env_name(p) for p in leaf_paths()] + sorted(ENV_ALIASES) + [ENV_CONFIG_FILE]


def config_from_args(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Config:
    """``load_config(args.config, env or os.environ, overrides_from_args(args))``."""
    return load_config(
        getattr(args, "config", None), os.environ if env is None else env, overrides_from_args(args)
    )
