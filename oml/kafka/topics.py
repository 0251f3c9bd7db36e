"""The topics oml needs, created at start-up and checked when they already exist.

* The **input** topic is the user's: it must exist, and its partition count is read from it.
* The **changelog** topics (model state, feature cache) hold oml's state: partition *p* of a
  changelog holds the state of input partition *p*, so each has exactly the input's partition
  count, and ``cleanup.policy=compact`` so the broker keeps the last record of every key forever
  instead of deleting old state by retention.  An existing changelog that differs is refused
  with :class:`TopicMismatch`; oml never alters or deletes a topic.
* The **output** topics (predictions, metrics, dead letters) are created if missing, with the
  input's partition count unless told otherwise; existing ones are used as they are.

A topic that another instance creates at the same moment ("already exists") is fine: it is then
checked like any existing one.

Only the Kafka protocol is used (Metadata, CreateTopics, DescribeConfigs), and a topic is never
looked up by name in a way that could make the broker auto-create it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from oml.kafka.clients import describe_error

__all__ = [
    "COMPACT",
    "TopicError",
    "TopicInfo",
    "TopicMismatch",
    "TopicMissing",
    "Topics",
    "ensure_topics",
    "topic_partitions",
]

log = structlog.get_logger()

COMPACT: dict[str, str] = {"cleanup.policy": "compact"}
"""The settings every changelog topic is created with (plus the caller's ``changelog_config``)."""


class TopicError(RuntimeError):
    """Topics could not be read, created or checked."""


class TopicMissing(TopicError):
    """The input topic does not exist."""


class TopicMismatch(TopicError):
    """An existing changelog topic does not fit: wrong partition count or not compacted.

    Attributes:
        problems: one sentence per problem, each saying what differs and what to do.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__(
            "existing changelog topic(s) do not match what oml needs:\n- " + "\n- ".join(problems)
        )


@dataclass(frozen=True)
class TopicInfo:
    """One topic as :func:`ensure_topics` left it."""

    name: str
    role: str  # "input", "changelog" or "output"
    partitions: int
    created: bool
    config: dict[str, str] = field(default_factory=dict)  # what oml set or checked


@dataclass(frozen=True)
class Topics:
    """What :func:`ensure_topics` found and did; ``oml topics`` prints it."""

    input: TopicInfo
    changelogs: tuple[TopicInfo, ...]
    outputs: tuple[TopicInfo, ...]

    @property
    def all(self) -> tuple[TopicInfo, ...]:
        return (self.input, *self.changelogs, *self.outputs)

    @property
    def created(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.all if t.created)

    def lines(self) -> list[str]:
        """One aligned line per topic, for printing."""
        width = max(len(t.name) for t in self.all)
        out = []
        for t in self.all:
            state = "created" if t.created else "exists"
            conf = " ".join(f"{k}={v}" for k, v in t.config.items())
            out.append(f"{t.name:<{width}}  {t.role:<9}  {t.partitions:>4} partitions  {state:<7}"
                       f"  {conf}".rstrip())
        return out


def topic_partitions(admin: AdminClient, timeout: float = 30.0) -> dict[str, int]:
    """Every topic on the cluster with its partition count (a full Metadata request: asking
    for one topic by name lets some brokers auto-create it)."""
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicError(describe_error(exc, "cannot read the cluster's topics")) from exc
    out = {}
    for name, topic in metadata.topics.items():
        if topic.error is not None and topic.error.code() != KafkaError.LEADER_NOT_AVAILABLE:
            continue
        out[name] = len(topic.partitions)
    return out


def ensure_topics(
    admin: AdminClient,
    input_topic: str,
    changelog_topics: Iterable[str],
    output_topics: Iterable[str],
    *,
    replication_factor: int = -1,
    output_partitions: int | None = None,
    output_replication_factor: int | None = None,
    changelog_config: Mapping[str, str] | None = None,
    output_config: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> Topics:
    """Check the input topic, create or check the changelogs, create missing outputs.

    Args:
        admin: a connected ``AdminClient``.
        input_topic: the user's event topic; it must exist.
        changelog_topics: model-state and feature-cache changelogs: compacted, with the input's
            partition count.
        output_topics: predictions, metrics, dead letters: created if missing.
        replication_factor: of the topics oml creates; -1 (default) is the broker's default.
        output_partitions: partitions of new output topics; None means the input's count.
        output_replication_factor: of new output topics; None means ``replication_factor``.
        changelog_config: extra settings for new changelog topics (``min.insync.replicas``...);
            ``cleanup.policy`` is always ``compact``.
        output_config: extra settings for new output topics (``retention.ms``...).
        timeout: seconds for each admin request, and to see new topics in metadata.

    Returns:
        What exists now, and what was created.

    Raises:
        TopicMissing: the input topic does not exist.
        TopicMismatch: an existing changelog has the wrong partition count or is not compacted.
        TopicError: the cluster could not be read or a topic could not be created.
    """
    changelogs = list(dict.fromkeys(changelog_topics))
    outputs = [t for t in dict.fromkeys(output_topics) if t not in changelogs]
    if input_topic in changelogs or input_topic in outputs:
        raise ValueError(f"the input topic {input_topic!r} is also named as an oml topic")
    if output_partitions is not None and output_partitions < 1:
        raise ValueError(f"output_partitions must be at least 1, not {output_partitions}")
    changelog_settings = {**(changelog_config or {}), **COMPACT}
    output_settings = dict(output_config or {})
    out_rf = replication_factor if output_replication_factor is None else output_replication_factor

    existing = topic_partitions(admin, timeout)
    if input_topic not in existing:
        raise TopicMissing(
            f"the input topic {input_topic!r} does not exist; create it first (its partition "
            "count sets oml's parallelism and the changelogs' partition count), or name another "
            "input topic"
        )
    n = existing[input_topic]
    if n < 1:
        raise TopicError(f"the input topic {input_topic!r} reports no partitions")
    out_n = output_partitions or n

    wanted = {name: NewTopic(name, n, replication_factor, config=changelog_settings)
              for name in changelogs if name not in existing}
    wanted.update({name: NewTopic(name, out_n, out_rf, config=output_settings)
                   for name in outputs if name not in existing})
    created = _create(admin, list(wanted.values()), timeout)

    partitions = _await_metadata(admin, [*changelogs, *outputs], timeout)
    _check_changelogs(admin, input_topic, n, changelogs, partitions, timeout)

    topics = Topics(
        input=TopicInfo(input_topic, "input", n, created=False),
        changelogs=tuple(
            TopicInfo(name, "changelog", partitions[name], name in created, dict(COMPACT))
            for name in changelogs
        ),
        outputs=tuple(
            TopicInfo(name, "output", partitions[name], name in created,
                      output_settings if name in created else {})
            for name in outputs
        ),
    )
    log.info("topics_ready", input=input_topic, partitions=n, created=list(topics.created))
    return topics


def _create(admin: AdminClient, new: list[NewTopic], timeout: float) -> set[str]:
    """Create topics; one that exists already (created meanwhile by another instance) is fine.
    Returns the names this call created."""
    if not new:
        return set()
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    created: set[str] = set()
    failures: list[str] = []
    for name, future in futures.items():
        try:
            future.result()
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                log.info("topic_created_concurrently", topic=name)
                continue
            failures.append(describe_error(exc, f"topic {name!r}"))
        else:
            created.add(name)
            log.info("topic_created", topic=name)
    if failures:
        raise TopicError("cannot create topics:\n- " + "\n- ".join(failures))
    return created


def _await_metadata(admin: AdminClient, names: list[str], timeout: float) -> dict[str, int]:
    """Partition counts of ``names`` once metadata shows all of them (creation is asynchronous
    on a real cluster)."""
    deadline = time.monotonic() + timeout
    while True:
        existing = topic_partitions(admin, timeout)
        missing = [n for n in names if existing.get(n, 0) < 1]
        if not missing:
            return {n: existing[n] for n in names}
        if time.monotonic() > deadline:
            raise TopicError(f"topics not visible in metadata {timeout:g}s after creation: "
                             f"{', '.join(missing)}")
        time.sleep(0.1)


def _describe(admin: AdminClient, names: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    """Topic configs by name (DescribeConfigs); a setting the broker leaves out is absent."""
    if not names:
        return {}
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    futures = admin.describe_configs(resources, request_timeout=timeout)
    out: dict[str, dict[str, Any]] = {}
    for resource, future in futures.items():
        try:
            entries = future.result()
        except KafkaException as exc:
            raise TopicError(
                describe_error(exc, f"cannot read the config of {resource.name!r}")
            ) from exc
        out[resource.name] = {entry.name: entry.value for entry in entries.values()}
    return out


def _check_changelogs(
    admin: AdminClient,
    input_topic: str,
    n: int,
    changelogs: list[str],
    partitions: Mapping[str, int],
    timeout: float,
) -> None:
    problems = []
    configs = _describe(admin, changelogs, timeout)
    for name in changelogs:
        if partitions[name] != n:
            problems.append(
                f"{name!r} has {partitions[name]} partitions but the input topic "
                f"{input_topic!r} has {n}: changelog partition p holds the state of input "
                f"partition p, so they must match. Delete {name!r} and let oml recreate it "
                "(the state it holds is lost), or configure another changelog topic name"
            )
        policy = configs.get(name, {}).get("cleanup.policy")
        if {p.strip() for p in (policy or "delete").split(",")} != {"compact"}:
            shown = (f"cleanup.policy={policy}" if policy
                     else "no cleanup.policy set (the broker default is delete)")
            problems.append(
                f"{name!r} has {shown}, not compact: retention would delete the state it "
                f"holds. Set it with `kafka-configs.sh --alter --entity-type topics "
                f"--entity-name {name} --add-config cleanup.policy=compact`, or delete the topic "
                "and let oml create it"
            )
    if problems:
        raise TopicMismatch(problems)
