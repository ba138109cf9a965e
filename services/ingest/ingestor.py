"""The ingest decision for one validated draft: which event, if any, it becomes.

Reads like the flow: fence by version → lifecycle (kill, hold, embargo, publish) → URL → event → remember.
What is remembered is written only after the event is acknowledged by Kafka (`Outbox.then`), so a crash in
between re-delivers the draft instead of losing its event.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from faststream.kafka.publisher.usecase import DefaultPublisher

from services.ingest.domain import (
    UnpublishableDraft,
    article_path,
    base_slug,
    build_article,
    event_version,
    first_publication_date,
    section_of,
)
from services.ingest.state import IngestStore, StoryState
from shared.contracts import ArticleKilled, ArticlePublished, ArticleWithdrawn, Correction, NinjsDraft
from shared.kafka import Outbox, Reject
from shared.logging import get_logger

log = get_logger(__name__)
MAX_SLUG_SUFFIX = 1000


class Ingestor:
    def __init__(self, store: IngestStore, articles: DefaultPublisher | str) -> None:
        self.store = store
        self.articles = articles

    async def prefetch(self, guids: list[str], outbox: Outbox) -> None:
        """Load the state of every story in the batch at once (one Redis round trip, not one per draft)."""
        known: dict[str, StoryState | None] = outbox.scratch.setdefault("ingest_state", {})
        missing = [g for g in guids if g not in known]
        if missing:
            known.update(await self.store.load_many(missing))

    async def preclaim(self, drafts: list[NinjsDraft], outbox: Outbox) -> None:
        """Claim, in one round trip, the URL each new story of the batch will ask for first; `_claim` then
        needs Redis only on a collision."""
        known: dict[str, StoryState | None] = outbox.scratch.get("ingest_state", {})
        wanted: dict[str, str] = {}
        for draft in drafts:
            if known.get(draft.guid) is not None or draft.evolvedfrom or draft.pubstatus != "usable":
                continue
            published = first_publication_date(draft)
            if published is None:
                continue
            wanted.setdefault(article_path(section_of(draft).code, published, base_slug(draft)), draft.guid)
        outbox.scratch["claims"] = await self.store.claim_paths(wanted) if wanted else {}

    async def _state(self, guid: str, outbox: Outbox) -> StoryState | None:
        """The state as this batch left it (drafts of one guid may follow each other in one batch)."""
        known: dict[str, StoryState | None] = outbox.scratch.setdefault("ingest_state", {})
        if guid not in known:
            known[guid] = await self.store.load(guid)
        return known[guid]

    def _remember(self, state: StoryState, outbox: Outbox) -> None:
        outbox.scratch.setdefault("ingest_state", {})[state.guid] = state
        changed: dict[str, StoryState] | None = outbox.scratch.get("ingest_changed")
        if changed is None:
            changed = outbox.scratch["ingest_changed"] = {}
            batch_changes = changed

            async def save() -> None:
                await self.store.save_many(list(batch_changes.values()))

            outbox.then(save)
        changed[state.guid] = state

    async def ingest(
        self,
        draft: NinjsDraft,
        raw: bytes,
        headers: dict[str, str],
        outbox: Outbox,
        *,
        now: datetime | None = None,
        releasing: bool = False,
    ) -> str:
        now = now or datetime.now(UTC)
        version = event_version(draft)
        state = await self._state(draft.guid, outbox)
        if state is not None and state.status == "killed":
            log.info("draft for a killed story ignored", version=version, killed_at=state.version)
            return "killed"
        if state is not None and not (releasing and version == state.version and state.status == "embargoed"):
            if version == state.version:
                log.info("duplicate draft ignored", version=version)
                return "duplicate"
            if version < state.version:
                log.info("stale draft ignored", version=version, current=state.version)
                return "stale"
        state = state or StoryState(guid=draft.guid)

        was_held = state.status == "embargoed"
        if draft.pubstatus == "canceled":
            if was_held:
                await self.store.drop_hold(draft.guid)
            await outbox.send(
                self.articles,
                draft.guid,
                ArticleKilled(guid=draft.guid, version=version, url_path=state.url_path or None),
                headers,
            )
            self._remember(_with(state, version=version, status="killed"), outbox)
            return "killed_now"

        if draft.pubstatus == "withheld":
            if was_held:
                await self.store.drop_hold(draft.guid)
            await outbox.send(
                self.articles,
                draft.guid,
                ArticleWithdrawn(guid=draft.guid, version=version, url_path=state.url_path or None, reason="withheld"),
                headers,
            )
            self._remember(_with(state, version=version, status="withheld"), outbox)
            return "withheld"

        if draft.embargoed is not None and draft.embargoed > now and not releasing:
            await self.store.hold(draft.guid, version, draft.embargoed.timestamp(), raw, headers)
            await outbox.send(
                self.articles,
                draft.guid,
                ArticleWithdrawn(guid=draft.guid, version=version, url_path=state.url_path or None, reason="embargoed"),
                headers,
            )
            self._remember(_with(state, version=version, status="embargoed"), outbox)
            log.info("draft held until its embargo", embargoed=draft.embargoed.isoformat())
            return "embargoed"

        if was_held and not releasing:
            await self.store.drop_hold(draft.guid)
        received = float(headers.get("received-at") or now.timestamp())
        claims: dict[str, str] = outbox.scratch.get("claims", {})
        article = await self._publishable(draft, state, datetime.fromtimestamp(received, UTC), claims)
        if article.correction is None and state.correction:
            # A correction stays on the page through later updates, until a newer correction replaces it.
            article = article.model_copy(update={"correction": Correction.model_validate_json(state.correction)})
        await outbox.send(self.articles, draft.guid, article, headers)
        self._remember(
            _with(
                state,
                version=version,
                status="published",
                slug=article.slug,
                slug_source=base_slug(draft) if draft.slugline else state.slug_source,
                url_path=article.url_path,
                previous_paths=article.previous_paths,
                date_published=article.date_published.isoformat(),
                story_root=article.story_root,
                correction=article.correction.model_dump_json() if article.correction is not None else "",
            ),
            outbox,
        )
        return "published"

    async def _publishable(
        self, draft: NinjsDraft, state: StoryState, first_seen: datetime, claims: dict[str, str]
    ) -> ArticlePublished:
        """`first_seen` (when Kafka received the draft) dates a draft that carries no date, so replays agree."""
        try:
            if state.url_path:
                return await self._update(draft, state)
            return await self._first_publication(draft, first_seen, claims)
        except UnpublishableDraft as exc:
            raise Reject("unpublishable", str(exc)) from exc

    async def _update(self, draft: NinjsDraft, state: StoryState) -> ArticlePublished:
        """Same URL and first-publication date; a changed slugline moves the URL and leaves a 301 behind."""
        published = datetime.fromisoformat(state.date_published)
        slug, url_path, previous = state.slug, state.url_path, list(state.previous_paths)
        if draft.slugline and base_slug(draft) != state.slug_source:
            wanted = base_slug(draft)
            new_slug, new_path = await self._claim(section_of(draft).code, published, wanted, draft.guid, {})
            if new_path != url_path:
                previous = [p for p in [*previous, url_path] if p != new_path]
                slug, url_path = new_slug, new_path
        return build_article(
            draft,
            slug=slug,
            url_path=url_path,
            previous_paths=previous,
            story_root=state.story_root or draft.guid,
            date_published=published,
        )

    async def _first_publication(
        self, draft: NinjsDraft, first_seen: datetime, claims: dict[str, str]
    ) -> ArticlePublished:
        if draft.evolvedfrom:
            origin = await self.store.load(draft.evolvedfrom)
            if origin is not None and origin.url_path and origin.status != "killed":
                await self.store.hand_over_path(origin.url_path, draft.guid)
                return build_article(
                    draft,
                    slug=origin.slug,
                    url_path=origin.url_path,
                    previous_paths=origin.previous_paths,
                    story_root=origin.story_root or origin.guid,
                    date_published=datetime.fromisoformat(origin.date_published),
                )
        published = first_publication_date(draft) or first_seen
        slug, url_path = await self._claim(section_of(draft).code, published, base_slug(draft), draft.guid, claims)
        return build_article(
            draft,
            slug=slug,
            url_path=url_path,
            previous_paths=[],
            story_root=draft.guid,
            date_published=published,
        )

    async def _claim(
        self, section: str, published: datetime, wanted: str, guid: str, claims: dict[str, str]
    ) -> tuple[str, str]:
        """A URL no other guid holds: the slug, else the slug with -2, -3, … (`claims`: owners already known)."""
        for n in range(1, MAX_SLUG_SUFFIX):
            slug = wanted if n == 1 else f"{wanted}-{n}"
            path = article_path(section, published, slug)
            owner = claims.get(path)
            if owner == guid:
                return slug, path
            if owner is None and await self.store.claim_path(path, guid):
                return slug, path
        raise Reject("slug_exhausted", f"no free URL for slug {wanted!r}")


def _with(state: StoryState, **changes: object) -> StoryState:
    fields = {**state.__dict__, **changes}
    return StoryState(**fields)


def received_now() -> str:
    return f"{time.time():.6f}"
