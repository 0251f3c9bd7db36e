"""ensure_topics: compacted changelogs co-partitioned with the input, outputs created, mismatches
refused with a message that says what differs and what to do."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from oml.kafka.topics import (
    TopicMismatch,
    TopicMissing,
    Topics,
    _create,
    ensure_topics,
    topic_partitions,
)

pytestmark = pytest.mark.broker


def _names(prefix: str) -> tuple[list[str], list[str]]:
    tag = uuid.uuid4().hex[:10]
    changelogs = [f"{prefix}-{tag}.models", f"{prefix}-{tag}.cache"]
    outputs = [f"{prefix}-{tag}.predictions", f"{prefix}-{tag}.metrics", f"{prefix}-{tag}.dlq"]
    return changelogs, outputs


def _policy(admin: AdminClient, topic: str) -> str | None:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = admin.describe_configs([resource])[resource].result(10)
    entry = entries.get("cleanup.policy")
    return None if entry is None else entry.value


def test_creates_compacted_changelogs_and_outputs(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=3)
    changelogs, outputs = _names("create")

    topics = ensure_topics(kafka_admin, source, changelogs, outputs)

    assert isinstance(topics, Topics)
    assert topics.input.partitions == 3
    assert [t.name for t in topics.changelogs] == changelogs
    assert [t.name for t in topics.outputs] == outputs
    assert set(topics.created) == {*changelogs, *outputs}
    counts = topic_partitions(kafka_admin)
    for name in [*changelogs, *outputs]:
        assert counts[name] == 3, name
    for name in changelogs:
        assert _policy(kafka_admin, name) == "compact"
    lines = topics.lines()
    assert len(lines) == 6
    assert any(changelogs[0] in line and "cleanup.policy=compact" in line for line in lines)


def test_is_idempotent(kafka_admin: AdminClient, new_topic: Callable[..., str]) -> None:
    source = new_topic(partitions=2)
    changelogs, outputs = _names("idem")
    first = ensure_topics(kafka_admin, source, changelogs, outputs)
    second = ensure_topics(kafka_admin, source, changelogs, outputs)
    assert len(first.created) == 5
    assert second.created == ()
    assert [t.partitions for t in second.all] == [2] * 6


def test_output_partitions_and_existing_outputs_kept(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=2)
    existing_output = new_topic(partitions=5)
    changelogs, outputs = _names("outparts")
    topics = ensure_topics(
        kafka_admin, source, changelogs, [outputs[0], existing_output], output_partitions=1
    )
    by_name = {t.name: t for t in topics.all}
    assert by_name[outputs[0]].partitions == 1
    assert by_name[existing_output].partitions == 5  # used as it is
    assert not by_name[existing_output].created
    assert all(t.partitions == 2 for t in topics.changelogs)


def test_missing_input_topic(kafka_admin: AdminClient) -> None:
    missing = f"no-such-input-{uuid.uuid4().hex[:8]}"
    changelogs, outputs = _names("missing")
    with pytest.raises(TopicMissing, match=f"input topic '{missing}' does not exist"):
        ensure_topics(kafka_admin, missing, changelogs, outputs)
    # nothing was created, and looking did not auto-create the input
    counts = topic_partitions(kafka_admin)
    assert missing not in counts
    assert not set(changelogs + outputs) & set(counts)


def test_changelog_with_wrong_partition_count_is_refused(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=3)
    wrong = new_topic(partitions=2, config={"cleanup.policy": "compact"})
    with pytest.raises(TopicMismatch) as info:
        ensure_topics(kafka_admin, source, [wrong], [])
    message = str(info.value)
    assert f"'{wrong}' has 2 partitions but the input topic '{source}' has 3" in message
    assert f"Delete '{wrong}' and let oml recreate it" in message
    assert len(info.value.problems) == 1


def test_changelog_not_compacted_is_refused(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=1)
    plain = new_topic(partitions=1)  # the broker's default policy: delete
    deleting = new_topic(partitions=1, config={"cleanup.policy": "compact,delete"})
    with pytest.raises(TopicMismatch) as info:
        ensure_topics(kafka_admin, source, [plain, deleting], [])
    problems = info.value.problems
    assert len(problems) == 2
    assert f"'{plain}' has " in problems[0] and "cleanup.policy" in problems[0]
    assert "not compact" in problems[0]
    assert "--add-config cleanup.policy=compact" in problems[0]
    assert f"'{deleting}' has cleanup.policy=compact,delete" in problems[1]


def test_every_problem_is_reported_at_once(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=2)
    bad = new_topic(partitions=1)
    with pytest.raises(TopicMismatch) as info:
        ensure_topics(kafka_admin, source, [bad], [])
    assert len(info.value.problems) == 2  # partitions and policy


def test_topic_created_meanwhile_is_not_an_error(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    existing = new_topic(partitions=1)
    assert _create(kafka_admin, [NewTopic(existing, 1, -1)], timeout=10) == set()


def test_concurrent_instances_both_succeed(
    kafka_admin: AdminClient, new_topic: Callable[..., str]
) -> None:
    source = new_topic(partitions=2)
    changelogs, outputs = _names("race")
    results: list[Topics] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(ensure_topics(kafka_admin, source, changelogs, outputs))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(results) == 2
    created = [set(r.created) for r in results]
    assert not created[0] & created[1]  # each topic was created by one of them
    assert created[0] | created[1] == {*changelogs, *outputs}


def test_input_named_as_output_is_rejected(kafka_admin: AdminClient) -> None:
    with pytest.raises(ValueError, match="also named"):
        ensure_topics(kafka_admin, "events", ["events"], [])
