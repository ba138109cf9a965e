"""A rewrite (`evolvedfrom`) takes over the story it rewrites: the related worker drops the origin from every
Check Also, for good, whatever order it meets the two events in, live or when it loads the archive, as the
publisher does with the origin's page."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from services.related.config import RelatedSettings
from services.related.engine import RelatedDoc
from services.related.worker import RelatedWorker
from shared.contracts import ArticleKilled, ArticlePublished, Term
from tests.unit.test_related_engine import archive

TOPIC = "broadsheet.articles"
TP = TopicPartition(TOPIC, 0)


def published(doc: RelatedDoc, *, version: int = 1, evolvedfrom: str | None = None, root: str = "") -> bytes:
    event = ArticlePublished(
        guid=doc.guid, version=version, url_path=doc.url_path, slug=doc.guid, headline=doc.headline,
        excerpt=doc.excerpt, body_html=f"<p>{doc.text}</p>", section=Term(code="news", name="News"),
        date_published=datetime.fromtimestamp(doc.published_at, UTC),
        date_modified=datetime.fromtimestamp(doc.published_at, UTC),
        evolvedfrom=evolvedfrom, story_root=root or doc.guid,
    )
    return event.model_dump_json().encode()


def killed(guid: str, version: int) -> bytes:
    return ArticleKilled(guid=guid, version=version).model_dump_json().encode()


def records(values: list[bytes]) -> list[Any]:
    return [SimpleNamespace(topic=TOPIC, partition=0, offset=n, key=None, value=v) for n, v in enumerate(values)]


def worker() -> RelatedWorker:
    runner = SimpleNamespace(backoff_seconds=0.01, max_backoff_seconds=0.02)
    return RelatedWorker(RelatedSettings(), broker=None, runner=runner)  # type: ignore[arg-type]


def linked(w: RelatedWorker) -> set[str]:
    return {link.guid for guid in w.article_versions for link in w.engine.links(guid)}


def story() -> tuple[list[RelatedDoc], RelatedDoc, RelatedDoc]:
    """Articles on one topic; the origin among them, and its rewrite (same topic, same story line)."""
    docs = archive(per_topic=6)[:6]
    origin = docs[0]
    rewrite = replace(origin, guid="rewrite-of-" + origin.guid, headline="Rewritten")
    return docs, origin, rewrite


def test_a_rewrite_takes_its_origin_off_every_list_for_good() -> None:
    docs, origin, rewrite = story()
    w = worker()
    for record in records([published(d) for d in docs]):
        w._apply(record)
    assert origin.guid in linked(w)

    changed = {}
    for record in records([published(rewrite, evolvedfrom=origin.guid, root=origin.guid)]):
        changed.update(w._apply(record))
    assert origin.guid not in w.engine and origin.guid not in linked(w)
    assert rewrite.guid in linked(w)
    # The lists that showed the origin are among the changes sent on, now without it.
    assert changed and all(origin.guid not in {link.guid for link in links} for links in changed.values())

    # Neither a kill of the rewrite nor a new version of the origin brings the origin back.
    for record in records([killed(rewrite.guid, 2), published(origin, version=2)]):
        w._apply(record)
    assert origin.guid not in w.engine and origin.guid not in linked(w) and rewrite.guid not in linked(w)


def test_an_origin_met_after_its_rewrite_never_enters_a_list() -> None:
    docs, origin, rewrite = story()
    w = worker()
    values = [published(rewrite, evolvedfrom=origin.guid, root=origin.guid)] + [published(d) for d in docs]
    for record in records(values):
        w._apply(record)
    assert origin.guid not in w.engine and origin.guid not in linked(w)
    assert rewrite.guid in linked(w)


class FakeArchive:
    """The archive consumer's two calls the start-up load makes, over records held in memory."""

    def __init__(self, held: list[Any]) -> None:
        self.held, self.read = held, 0

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[TopicPartition, list[Any]]:
        batch, self.read = self.held[self.read :], len(self.held)
        return {TP: batch} if batch else {}

    async def position(self, tp: TopicPartition) -> int:
        return self.read


async def test_loading_the_archive_leaves_out_a_story_a_rewrite_took_over() -> None:
    docs, origin, rewrite = story()
    for order in (
        [published(d) for d in docs] + [published(rewrite, evolvedfrom=origin.guid, root=origin.guid)],
        [published(rewrite, evolvedfrom=origin.guid, root=origin.guid)] + [published(d) for d in docs],
    ):
        w = worker()
        held = records(order)
        w.archive = FakeArchive(held)  # type: ignore[assignment]
        await w._load_archive({TP: len(held)})
        assert origin.guid not in w.engine and rewrite.guid in w.engine
        assert origin.guid not in linked(w)
        assert origin.guid in w.superseded  # and a later event about it keeps it out, as live


def test_the_group_member_is_static_under_an_instance_id() -> None:
    """INSTANCE_ID (the pod name) makes related's group membership static, as it does every other consumer's."""
    runner = SimpleNamespace(backoff_seconds=0.01, max_backoff_seconds=0.02)
    pod = RelatedWorker(RelatedSettings(instance_id="related-7f9c"), broker=None, runner=runner)  # type: ignore[arg-type]
    assert pod.membership() == {"group_instance_id": "broadsheet-related-related-7f9c-members"}
    assert RelatedWorker(RelatedSettings(), broker=None, runner=runner).membership() == {}  # type: ignore[arg-type]
