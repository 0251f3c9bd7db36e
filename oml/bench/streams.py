"""Drift streams for the bench: River's synthetic generators, seeded, generated offline.

A stream is played in the order it was generated, on every pass (it is never shuffled), so the
concept changes where the stream says.  Each is a :class:`~oml.bench.datasets.Dataset` with
``stream=True`` and its drift points (the 0-based index of the first event of each new
concept).  Replaying a drifting stream for a second pass brings the first concept back at once,
so for those (``restart_is_drift``) the start of every pass after the first is a drift point
too: the passes of ``sea-drift`` are the concepts A B | A B | A B.

- ``sea-drift``: SEA (Street & Kim 2001; three features in [0, 10], the label is
  ``x0 + x1 > threshold``, 10% label noise), threshold 8 (variant 0) for the first half, then
  9.5 (variant 3): an abrupt drift halfway that relabels about 17% of the feature space.
- ``hyperplane-drift``: a rotating hyperplane (Hulten et al. 2001; ten features in [0, 1],
  two of whose weights move by 0.001 per event, reversing direction with probability 0.1;
  5% label noise): gradual drift all along, no abrupt point inside a pass.
- ``agrawal-drift``: Agrawal's loan-applicant stream (Agrawal et al. 1993; River's, no
  perturbation) with raw-scale features (salary and commission in the tens of thousands, house
  value up to about a million, loan up to 500,000, age, years), labelled by classification
  function 6 (disposable income ``2/3 (salary + commission) - loan/5 - 20000``) for the first
  half, then function 8 (the same minus ``5000 * elevel``, plus 10,000): an abrupt concept
  change halfway on features no one scaled, both halves linearly separable and balanced.
- ``agrawal-shift``: the same, but function 7 after the change (education instead of the
  loan): the classes go from balanced to 98% / 2%, so the change moves the class prior too.
- ``epoch-ms``: a static hyperplane (five features in [0, 1], 5% noise) plus ``event_time_ms``,
  an epoch-millisecond timestamp (1.7e12, one second further each event) that carries no
  signal: what a user's raw event time looks like to a learner.  No drift.

The abrupt switch is done here (the first ``position`` events from one generator, the rest from
the other) rather than by River's ``ConceptDriftStream``, whose ``width=1`` overflows
``math.exp`` in River 0.26.  ``--seed`` shifts every generator's seed (seed 0 is the stream
the result files and :data:`SHA256` pin); it does not shuffle.

>>> ds = load("sea-drift")
>>> ds.n, ds.features, ds.classes, ds.drifts, ds.restart_is_drift
(20000, ['x0', 'x1', 'x2'], [0, 1], (10000,), True)
>>> drift_points(ds, passes=2)
[10000, 20000, 30000]
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from oml.bench.dataset import Dataset

START_MS = 1_700_000_000_000
"""``event_time_ms`` of the first ``epoch-ms`` event (2023-11-14T22:13:20Z)."""


@dataclass(frozen=True)
class StreamSpec:
    name: str
    n: int
    drifts: tuple[int, ...]
    restart_is_drift: bool
    generate: Callable[[int, int], Iterable[tuple[dict[Any, Any], Any]]]  # (n, seed)
    description: str


def _switch(
    first: Iterable[tuple[dict, Any]], then: Iterable[tuple[dict, Any]], position: int, n: int
) -> Iterator[tuple[dict, Any]]:
    """The first ``position`` events of ``first``, then ``n - position`` of ``then``."""
    yield from itertools.islice(first, position)
    yield from itertools.islice(then, n - position)


def _sea(n: int, seed: int) -> Iterable[tuple[dict, Any]]:
    from river.datasets import synth

    a = synth.SEA(variant=0, noise=0.1, seed=seed + 1)
    b = synth.SEA(variant=3, noise=0.1, seed=seed + 2)
    return _switch(a, b, n // 2, n)


def _hyperplane(n: int, seed: int) -> Iterable[tuple[dict, Any]]:
    from river.datasets import synth

    h = synth.Hyperplane(
        seed=seed + 1, n_features=10, n_drift_features=2, mag_change=0.001,
        noise_percentage=0.05, sigma=0.1,
    )  # fmt: skip
    return itertools.islice(h, n)


def _agrawal(then: int) -> Callable[[int, int], Iterable[tuple[dict, Any]]]:
    def generate(n: int, seed: int) -> Iterable[tuple[dict, Any]]:
        from river.datasets import synth

        a = synth.Agrawal(classification_function=6, seed=seed + 1)
        b = synth.Agrawal(classification_function=then, seed=seed + 2)
        return _switch(a, b, n // 2, n)

    return generate


def _epoch_ms(n: int, seed: int) -> Iterator[tuple[dict, Any]]:
    from river.datasets import synth

    h = synth.Hyperplane(seed=seed + 1, n_features=5, noise_percentage=0.05)
    for i, (x, y) in enumerate(itertools.islice(h, n)):
        yield {**x, "event_time_ms": float(START_MS + 1000 * i)}, y


STREAMS: dict[str, StreamSpec] = {
    s.name: s
    for s in (
        StreamSpec("sea-drift", 20_000, (10_000,), True, _sea,
                   "River SEA, variant 0 then 3 (abrupt, halfway), 10% noise"),
        StreamSpec("hyperplane-drift", 20_000, (), True, _hyperplane,
                   "River Hyperplane, 10 features, 2 drifting, mag_change 0.001, 5% noise"),
        StreamSpec("agrawal-drift", 20_000, (10_000,), True, _agrawal(8),
                   "River Agrawal, function 6 then 8 (abrupt, halfway), raw-scale features"),
        StreamSpec("agrawal-shift", 20_000, (10_000,), True, _agrawal(7),
                   "River Agrawal, function 6 then 7 (abrupt, halfway, classes 50/50 to 98/2)"),
        StreamSpec("epoch-ms", 20_000, (), False, _epoch_ms,
                   "River Hyperplane (5 features, static, 5% noise) + an epoch-ms timestamp"),
    )
}  # fmt: skip

SHA256: dict[str, str] = {
    "sea-drift": "967241abe6c5592f9aa6be099a124407b12af70450a1997f129476e31647fd7d",
    "hyperplane-drift": "3fd00be0bde5c1ba85e30d4e82b00d4e2cb4ca35d89556c12e2c9820071331cb",
    "agrawal-drift": "51690900f227e102600c653a690b9c124dbefa5d5362a89016aaacb03d86b19a",
    "agrawal-shift": "e35c3f4076a9b2404f3ab5ee4cf04b2ebcdfde780feaa8352e66ddfc9fdfb15a",
    "epoch-ms": "d5e3e8e62c0f02bc608e374eaedb5009818c7196959e334f75396d61242271a0",
}
"""The :func:`digest` of each stream at seed 0, as River 0.26.1 generates it (checked by the
tests, recorded in every report)."""


def _feature_name(key: Any) -> str:
    return f"x{key}" if isinstance(key, int) else str(key)


def load(name: str, *, seed: int = 0) -> Dataset:
    """Stream ``name`` generated with seed offset ``seed``: features named ``x0, x1, ...`` when
    River numbers them, labels as ints."""
    spec = STREAMS[name]
    X: list[dict[str, float]] = []
    y: list[Any] = []
    for x, label in spec.generate(spec.n, seed):
        X.append({_feature_name(k): float(v) for k, v in x.items()})
        y.append(int(label))
    features = list(X[0])
    ds = Dataset(
        name=name, features=features, target="y", task="classification", X=X, y=y,
        source=f"generated: {spec.description}, seed offset {seed}", stream=True,
        drifts=spec.drifts, restart_is_drift=spec.restart_is_drift,
    )  # fmt: skip
    return replace(ds, sha256=digest(ds))


def digest(ds: Dataset) -> str:
    """sha256 of the stream as CSV text (features in order, ``repr`` of each float, label)."""
    h = hashlib.sha256(",".join([*ds.features, ds.target]).encode() + b"\n")
    for x, label in zip(ds.X, ds.y, strict=True):
        h.update(",".join([*(repr(x[f]) for f in ds.features), str(label)]).encode() + b"\n")
    return h.hexdigest()


def drift_points(ds: Dataset, passes: int) -> list[int]:
    """Trace positions (0-based, over all passes) where a new concept starts."""
    out = []
    for p in range(passes):
        if p and ds.restart_is_drift:
            out.append(p * ds.n)
        out.extend(p * ds.n + d for d in ds.drifts)
    return out
