"""Faults inside the service, on a real broker: an exception while handling one message sets that
message aside and the service goes on; a failure that no message explains restarts the batch and
commits none of its partial work; a crash commits nothing of the batch it stopped in."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, ClassVar

import pytest
from service_helpers import assert_same_models, changelog_models, offline, predictions_by_event

from oml.codecs.events import Event
from oml.kafka.deadletter import HEADER_ERROR, HEADER_REASON
from oml.plugins import Registry, default_registry
from oml.replay import produce_events
from oml.service import Service

pytestmark = [pytest.mark.broker, pytest.mark.slow]

PA = default_registry().get("pa")


class Fragile(PA):  # type: ignore[misc,valid-type]
    """PA that a plugin bug breaks on some inputs: ``a == 7`` fails to predict, ``a == 13``
    fails to learn, ``a == 21`` fails to learn the first time only (a transient fault), and
    ``a == 99`` crashes the process (``Crash`` is no ``Exception``: nothing may catch it)."""

    algorithm = "fragile"
    once: ClassVar[set[float]] = set()

    @classmethod
    def make_bank(cls, template: Any) -> Any:
        return None  # one model at a time, as a plugin without a fast path

    def predict_proba_one(self, x: dict, **kwargs: Any) -> dict:
        if x.get("a") == 7.0:
            raise ZeroDivisionError("the plugin divided by zero")
        return super().predict_proba_one(x, **kwargs)

    def learn_one(self, x: dict, y: Any) -> None:
        a = x.get("a")
        if a == 13.0:
            raise RuntimeError("the plugin cannot learn this")
        if a in (21.0, 99.0) and a not in Fragile.once:
            Fragile.once.add(a)
            raise Crash() if a == 99.0 else OSError("a transient failure")
        super().learn_one(x, y)


class Crash(BaseException):
    """What kills a process: not an ``Exception``, so no handler of the service takes it."""


REGISTRY = Registry(classes={**default_registry().classes, "fragile": Fragile})


def stream(values: list[float], n_keys: int = 4, delay: int = 6) -> list[Event]:
    """An unlabeled event per value, and its feedback ``delay`` events later."""
    events: list[Event] = []
    pending: list[Event] = []
    for i, a in enumerate(values):
        key = f"k{i % n_keys}"
        events.append(Event(f"e{i}", key, {"a": a, "b": 1.0}, None, 1_700_000_000_000 + i))
        pending.append(Event(f"e{i}", key, None, a > 10, 1_700_000_000_000 + i))
        if len(pending) > delay:
            events.append(pending.pop(0))
    return events + pending


def letters(read_all, topic) -> list[tuple[str, str, str]]:
    out = []
    for r in read_all(topic):
        out.append((r.header(HEADER_REASON), json.loads(r.value)["event_id"],
                    r.header(HEADER_ERROR)))
    return out


def test_an_exception_in_one_message_sets_only_it_aside(setup, bootstrap_servers, read_all,
                                                       embedded_broker):
    Fragile.once.clear()
    values = [float(v) for v in [1, 2, 7, 3, 13, 4, 21, 5, 6, 8, 9, 11, 12, 14, 15, 16] * 3]
    events = stream(values)
    config = setup(**{"model.algorithm": "fragile", "processing.batch_size": 1000})
    produce_events(config, bootstrap_servers, iter(events))

    summary = Service(config, registry=REGISTRY).run()

    got = letters(read_all, config.topics.dead_letter)
    failed = {e.event_id for e in events if e.label is None and e.features["a"] == 7.0}
    refused = {e.event_id for e in events if e.label is None and e.features["a"] == 13.0}
    internal = Counter(eid for reason, eid, _ in got if reason == "internal_error")
    # each message a plugin fails on is set aside exactly once, with the exception named
    assert internal == Counter(dict.fromkeys(failed | refused, 1))
    errors = {eid: error for reason, eid, error in got if reason == "internal_error"}
    assert all("ZeroDivisionError" in errors[e] for e in failed)
    assert all("RuntimeError" in errors[e] for e in refused)
    # the feedback of an event that was never scored finds nothing to learn from
    assert {eid for reason, eid, _ in got if reason != "internal_error"} == failed
    assert summary.dead_letters["internal_error"] == len(failed | refused)

    # everything else was learned once, as if the bad messages had never been there
    valid = [e for e in events if e.event_id not in failed | refused]
    assert_same_models(changelog_models(read_all, config.topics.models, REGISTRY),
                       offline(valid, "fragile", registry=REGISTRY))
    predicted = predictions_by_event(read_all, config.topics.predictions)
    assert set(predicted) == {e.event_id for e in events if e.event_id not in failed}
    if embedded_broker is None:  # a broker that hides aborted transactions: once each
        assert set(predicted.values()) == {1}


@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_a_crash_commits_nothing_of_the_batch_it_stopped_in(setup, bootstrap_servers, read_all,
                                                            guarantee, embedded_broker):
    Fragile.once.clear()
    ordinary = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 9.0]
    values = ordinary * 2 + [99.0] + ordinary
    events = stream(values)
    config = setup(**{"model.algorithm": "fragile", "processing.batch_size": 1000,
                      "processing.guarantee": guarantee})
    produce_events(config, bootstrap_servers, iter(events[:5]))
    produce_events(config, bootstrap_servers, iter([Event("junk", "k0")]))  # no features: DLQ
    produce_events(config, bootstrap_servers, iter(events[5:]))

    with pytest.raises(Crash):
        Service(config, registry=REGISTRY).run()
    Service(config, registry=REGISTRY).run()

    # nothing lost: the second run did what the first left undone
    assert_same_models(changelog_models(read_all, config.topics.models, REGISTRY),
                       offline(events, "fragile", registry=REGISTRY))
    predicted = predictions_by_event(read_all, config.topics.predictions)
    assert set(predicted) == {e.event_id for e in events}
    dead = Counter(eid for _, eid, _ in letters(read_all, config.topics.dead_letter))
    assert set(dead) == {"junk"}
    if embedded_broker is None and guarantee == "exactly-once":
        assert dead == Counter({"junk": 1}) and set(predicted.values()) == {1}
