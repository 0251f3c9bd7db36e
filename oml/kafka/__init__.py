"""oml's Kafka layer: everything here speaks only the Kafka protocol (confluent-kafka).

* :mod:`oml.kafka.broker`: :class:`~oml.kafka.broker.EmbeddedBroker`, a Tansu broker on loopback
  for when no cluster is configured (and for the tests).
* :mod:`oml.kafka.clients`: librdkafka configs for the service consumer, the transactional and
  at-least-once producers, the restore consumer and the admin client (user settings last), and
  :func:`~oml.kafka.clients.describe_error`.
* :mod:`oml.kafka.topics`: :func:`~oml.kafka.topics.ensure_topics`: compacted changelogs
  co-partitioned with the input, output topics, and clear refusals of mismatching topics.
* :mod:`oml.kafka.deadletter`: the dead-letter record format, produced and parsed.
* :mod:`oml.kafka.restore`: reading a changelog partition to its end.
"""

from __future__ import annotations

__all__ = ["broker", "clients", "deadletter", "restore", "topics"]
