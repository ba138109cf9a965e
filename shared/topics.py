"""Every Kafka topic Broadsheet uses, with its partitioning and retention, in one place.

Topics are created explicitly (`ensure_topics`), never by auto-creation, which would give one partition and
the broker's default retention. Topics that hold truth keep everything (`retention.ms=-1`); topics that only
carry the latest derived state per key are compacted.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

KEEP_FOREVER = {"retention.ms": "-1", "retention.bytes": "-1"}
LATEST_PER_KEY = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
STORY_RECORD_BYTES = 2_200_000
"""The largest record of a topic that carries a whole story: a draft (up to 2 MiB) or its article event, with
their envelopes. Set on those topics themselves, so that a broker left at Kafka's 1 MiB default takes them."""
DEAD_LETTER_RECORD_BYTES = STORY_RECORD_BYTES + 64 * 1024
"""A dead letter is the failed record's bytes plus headers that say why (a few KiB at most)."""
STORY_SIZED = {"max.message.bytes": str(STORY_RECORD_BYTES)}

DRAFTS = "newsroom.drafts"
ARTICLES = "broadsheet.articles"
RELATED = "broadsheet.related"
COMMENT_SUBMISSIONS = "broadsheet.comments.submitted"
COMMENT_DECISIONS = "broadsheet.comments.decisions"
DESK_ALERTS = "broadsheet.desk.alerts"
SERVICES = ("ingest", "related", "comments", "publisher")


def dead_letter_topic(service: str) -> str:
    """Each service has its own dead-letter topic so that ACLs can keep services apart."""
    return f"broadsheet.deadletter.{service}"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    description: str
    config: dict[str, str] = field(default_factory=dict)


TOPICS: tuple[TopicSpec, ...] = (
    TopicSpec(
        DRAFTS,
        "ninjs drafts from newsroom systems, key = guid; the input of record",
        {**KEEP_FOREVER, **STORY_SIZED},
    ),
    TopicSpec(
        ARTICLES, "article lifecycle events from ingest (published, withdrawn, killed)", {**KEEP_FOREVER, **STORY_SIZED}
    ),
    TopicSpec(RELATED, "Check Also links per article, latest per guid", LATEST_PER_KEY),
    TopicSpec(COMMENT_SUBMISSIONS, "reader comments as submitted, key = article guid", KEEP_FOREVER),
    TopicSpec(COMMENT_DECISIONS, "moderation decisions and audit trail, key = article guid", KEEP_FOREVER),
    TopicSpec(DESK_ALERTS, "notices for the desk (comment surges)", KEEP_FOREVER),
    *(
        TopicSpec(
            dead_letter_topic(s),
            f"records {s} could not process, with the reason",
            {**KEEP_FOREVER, "max.message.bytes": str(DEAD_LETTER_RECORD_BYTES)},
        )
        for s in SERVICES
    ),
)


class TopicsRefused(RuntimeError):
    """Kafka answered a topic creation with an error for one topic or more."""


def with_prefix(prefix: str, name: str) -> str:
    return f"{prefix}{name}"


async def ensure_topics(
    bootstrap_servers: str,
    *,
    prefix: str = "",
    partitions: int = 12,
    replication_factor: int = 1,
    specs: Iterable[TopicSpec] = TOPICS,
    client_options: Mapping[str, Any] | None = None,
) -> list[str]:
    """Create the topics that are missing; returns the names created. Safe to run any number of times."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, **(client_options or {}))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(
                name=with_prefix(prefix, spec.name),
                num_partitions=partitions,
                replication_factor=replication_factor,
                topic_configs=spec.config,
            )
            for spec in specs
            if with_prefix(prefix, spec.name) not in existing
        ]
        if not wanted:
            return []
        with contextlib.suppress(TopicAlreadyExistsError):
            answer = await admin.create_topics(wanted)
            refused = [
                f"{error[0]}: {error[2] if len(error) > 2 and error[2] else for_code(error[1]).__name__}"
                for error in answer.topic_errors
                if error[1] not in (0, TopicAlreadyExistsError.errno)
            ]
            if refused:
                # Kafka answers per topic: an invalid partition count or replication factor is refused here.
                raise TopicsRefused("Kafka refused to create " + "; ".join(refused))
        return [t.name for t in wanted]
    finally:
        await admin.close()
