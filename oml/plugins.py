"""The one door learners come through: the ``oml.algorithms`` entry-point group.

Built-in learners register in oml's own pyproject exactly as a third-party package would, so
the service never imports an algorithm module by name.

>>> registry = load_registry()
>>> "pa" in registry.names()
True
>>> registry.create("pa", {"C": 0.5}).C
0.5
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any

import structlog

from oml.learner import Learner

GROUP = "oml.algorithms"

log = structlog.get_logger()


class UnknownAlgorithm(LookupError):
    def __init__(self, name: str, known: list[str], broken: dict[str, str]) -> None:
        message = f"unknown algorithm {name!r}; known: {', '.join(known) or 'none'}"
        if name in broken:
            message = f"algorithm {name!r} failed to load: {broken[name]}"
        super().__init__(message)
        self.name = name


@dataclass
class Registry:
    """Learner classes by entry-point name, and the plugins that failed to import."""

    classes: dict[str, type] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.classes)

    def get(self, name: str) -> type:
        try:
            return self.classes[name]
        except KeyError:
            raise UnknownAlgorithm(name, self.names(), self.broken) from None

    def create(self, name: str, params: dict[str, Any] | None = None) -> Any:
        """A new model of algorithm ``name``; unknown parameters are a clear error."""
        cls = self.get(name)
        params = dict(params or {})
        accepted = parameters(cls)
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise TypeError(
                f"algorithm {name!r} has no parameter {', '.join(unknown)}; "
                f"it takes: {', '.join(accepted) or 'none'}"
            )
        return cls(**params)


def parameters(cls: type) -> dict[str, Any]:
    """The constructor parameters of a learner class and their defaults."""
    out: dict[str, Any] = {}
    for p in inspect.signature(cls).parameters.values():
        if p.name == "self" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        out[p.name] = None if p.default is p.empty else p.default
    return out


def load_registry() -> Registry:
    """Read the entry-point group afresh (a plugin installed since the last call is seen)."""
    registry = Registry()
    for ep in entry_points(group=GROUP):
        if ep.name in registry.classes:
            continue  # the same distribution seen twice on sys.path
        try:
            cls = ep.load()
        except Exception as exc:  # a broken plugin must not break the others
            registry.broken[ep.name] = f"{type(exc).__name__}: {exc}"
            log.warning("algorithm_plugin_failed", name=ep.name, target=ep.value, error=str(exc))
            continue
        if not (isinstance(cls, type) and issubclass(cls, Learner)):
            registry.broken[ep.name] = f"{ep.value} is not an oml.learner.Learner subclass"
            log.warning("algorithm_plugin_failed", name=ep.name, error=registry.broken[ep.name])
            continue
        cls.algorithm = ep.name  # state records name the algorithm by its entry point
        registry.classes[ep.name] = cls
    return registry


@cache
def default_registry() -> Registry:
    """The registry as it stood at first use; what the service and the state codec use."""
    return load_registry()
