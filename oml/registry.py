"""The former name of :mod:`oml.plugins`, kept while :mod:`oml.service` imports from it.

"Registry" also names the schema registry (:mod:`oml.codecs.schema_registry`) and Prometheus'
registry of metrics; the algorithm plugins live in :mod:`oml.plugins`.
"""

from __future__ import annotations

from oml.plugins import (
    GROUP,
    Registry,
    UnknownAlgorithm,
    default_registry,
    load_registry,
    parameters,
)

__all__ = [
    "GROUP",
    "Registry",
    "UnknownAlgorithm",
    "default_registry",
    "load_registry",
    "parameters",
]
