"""The moderation API (`Authorization: Bearer <MODERATION_TOKEN>`), used by the moderation UI and desk tools.

Reads come from the comments service's Redis view. Every action is a `ModerationAction` produced to the
submissions topic (keyed by the article guid) and acknowledged by Kafka before the answer (`202`): the consumer
applies it in order with the comment's other events and emits the `CommentDecided` with the next revision and
the moderator as actor, which is the audit trail. Answers never carry an e-mail address or an IP, nor their
hashes.

| method | path | body | answer |
|---|---|---|---|
| GET | `/moderation/comments?status=pending&limit=50&before=EPOCH&near_key=K` | | list, newest first |
| GET | `/moderation/comments/{id}` | | one comment with its history |
| POST | `/moderation/comments/{id}/ACTION` | `{"reason", "moderator", "expected_revision"}` | 202 |
| POST | `/moderation/comments/bulk` | `{"action", "ids", "revisions"}` or `{"action", "near_key", "statuses"}` | 202 |
| POST | `/moderation/bans` | `{"email"}`, `{"ip"}` or `{"comment_id", "with_ip"}`; `{"reason", "moderator"}` | 201 |
| DELETE | `/moderation/bans` | the same: lifts those bans | 200 |
| POST | `/moderation/premoderation` | `{"article" or "section", "on": true\\|false, "reason", "moderator"}` | 200 |
| GET | `/moderation/articles/{guid}` | | the article as moderation sees it |

ACTION is approve, reject, spam or restore. A comment is shown with its article's headline and public URL, and a
reply with the author and the first words of the comment it answers.

An action that names the revision it was decided on (`expected_revision`) is refused with 409 when the comment
changed since (another moderator or the readers decided first), here and, if the change is still on its way, by the
consumer. An approval is refused with 409 when it would show a banned author's comment, or a reply whose parent is
not shown.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from faststream.kafka import KafkaBroker

from services.comments.articles import ArticleStates
from services.comments.handlers import ACTION_STATUS
from services.comments.store import STATUSES, CommentRecord, CommentStore, Hasher
from shared.contracts.comments import ModerationAction, ModerationBan, ModerationBanLifted, ModerationPremoderation
from shared.http import Request, Response, Router, json_response, problem
from shared.kafka import json_bytes

MAX_BULK = 1000
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
WORK_STATUSES = ("pending", "spam", "reported")
Route = Callable[[Request], Awaitable[Response]]


PARENT_EXCERPT_CHARS = 140


def comment_excerpt(body: str) -> str:
    """The start of a comment on one line, cut between words: enough to tell which comment a reply answers."""
    text = " ".join(body.split())
    if len(text) <= PARENT_EXCERPT_CHARS:
        return text
    return text[:PARENT_EXCERPT_CHARS].rsplit(" ", 1)[0] + "…"  # text without spaces: cut at the limit


def bearer_ok(request: Request, token: str) -> bool:
    """Constant-time comparison of the bearer token (an empty configured token never matches)."""
    scheme, _, provided = request.header("authorization").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    return hmac.compare_digest(provided.strip().encode(), token.encode())


def unauthorized() -> Response:
    response = problem(401, "missing or wrong moderation token")
    response.headers.append((b"www-authenticate", b'Bearer realm="moderation"'))
    return response


def json_body(request: Request) -> dict[str, Any]:
    if not request.body.strip():
        return {}
    try:
        data = request.json()
    except ValueError as exc:
        raise BadRequest("body is not JSON") from exc
    if not isinstance(data, dict):
        raise BadRequest("body must be a JSON object")
    return data


class BadRequest(Exception):
    pass


def _text(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    value = value.strip()
    if len(value) > limit:
        raise BadRequest(f"{name} is longer than {limit} characters")
    return value or None


class ModerationApi:
    def __init__(
        self,
        store: CommentStore,
        articles: ArticleStates,
        hasher: Hasher,
        broker: KafkaBroker,
        submissions_topic: str,
        token: str,
        site_base_url: str = "",
    ) -> None:
        self.store = store
        self.articles = articles
        self.hasher = hasher
        self.broker = broker
        self.submissions_topic = submissions_topic
        self.token = token
        self.site_base_url = site_base_url.rstrip("/")

    def install(self, router: Router) -> None:
        router.add(["GET"], "/moderation/comments", self.guarded(self.list_comments))
        router.add(["POST"], "/moderation/comments/bulk", self.guarded(self.bulk))
        router.add(["GET"], "/moderation/comments/{id}", self.guarded(self.one_comment))
        router.add(["POST"], "/moderation/comments/{id}/{action}", self.guarded(self.act))
        router.add(["POST"], "/moderation/bans", self.guarded(self.ban))
        router.add(["DELETE"], "/moderation/bans", self.guarded(self.lift_ban))
        router.add(["POST"], "/moderation/premoderation", self.guarded(self.premoderation))
        router.add(["GET"], "/moderation/articles/{guid}", self.guarded(self.article))

    def guarded(self, handler: Route) -> Route:
        async def guarded(request: Request) -> Response:
            if not bearer_ok(request, self.token):
                return unauthorized()
            try:
                return await handler(request)
            except BadRequest as exc:
                return problem(400, str(exc))

        return guarded

    # --- reads --------------------------------------------------------------------------------------------

    async def list_comments(self, request: Request) -> Response:
        query = request.query
        status = query.get("status", ["pending"])[0]
        if status not in STATUSES:
            return problem(400, f"status must be one of {', '.join(STATUSES)}")
        try:
            limit = min(max(int(query.get("limit", [DEFAULT_LIMIT])[0]), 1), MAX_LIMIT)
            before = float(query["before"][0]) if "before" in query else None
            if before is not None and math.isnan(before):  # Redis refuses "(nan" as a score bound
                raise ValueError("before is not a number")
        except ValueError:
            return problem(400, "limit and before must be numbers")
        near = query.get("near_key", [None])[0]
        if near:
            records = [r for r in await self.store.records(await self.store.near_ids(near)) if r is not None]
            records = sorted((r for r in records if r.status == status), key=_newest_first)
            total = len(records)
            records = records[:limit]
        else:
            ids = await self.store.queue(status, limit, before)
            records = [r for r in await self.store.records(ids) if r is not None and r.status == status]
            total = await self.store.queue_size(status)
        # The whole queue's size, so a page of it can say how much more there is.
        headers = [(b"x-total-count", str(total).encode())]
        return json_response(await self._shown(records), headers=headers)

    async def one_comment(self, request: Request) -> Response:
        record = await self.store.record(request.params["id"])
        if record is None:
            return problem(404, "no such comment")
        return json_response((await self._shown([record]))[0])

    async def _shown(self, records: Sequence[CommentRecord]) -> list[dict[str, Any]]:
        """Records as the API shows them, each with its near-identical count, the article it is about (headline
        and public URL, or null while moderation has not seen the story published) and, for a reply, who and what
        it answers: a moderator reads a comment against its story and its thread."""
        counts = await self.store.near_counts(r.near_key for r in records)
        headlines = await self.articles.headlines(r.article_guid for r in records)
        parent_ids = sorted({r.parent_id for r in records if r.parent_id})
        parents = dict(zip(parent_ids, await self.store.records(parent_ids), strict=True))
        shown = []
        for record in records:
            view = record.public(counts.get(record.near_key))
            known = headlines.get(record.article_guid)
            view["article"] = None if known is None else {"headline": known[0], "url": self.site_base_url + known[1]}
            parent = parents.get(record.parent_id or "")
            view["parent"] = (
                None if parent is None else {"author": parent.author, "excerpt": comment_excerpt(parent.body)}
            )
            shown.append(view)
        return shown

    async def article(self, request: Request) -> Response:
        guid = request.params["guid"]
        state = await self.articles.get(guid)
        if state is None:
            return problem(404, "article not known to moderation")
        sections = await self.store.section_premoderation()
        return json_response(
            {
                "guid": guid,
                "status": state.status,
                "section": state.section,
                "published_at": state.published_at,
                "premoderated": state.premoderated,
                "surge_premoderated": state.surge,
                "section_premoderated": state.section in sections,
                "headline": state.headline or None,
                "url": self.site_base_url + state.url_path if state.url_path else None,
            }
        )

    # --- actions ------------------------------------------------------------------------------------------

    async def act(self, request: Request) -> Response:
        action = request.params["action"]
        if action not in ACTION_STATUS:
            return problem(404, "action must be approve, reject, spam or restore")
        data = json_body(request)
        moderator = _text(data, "moderator", 100) or "moderator"
        reason = _text(data, "reason", 500)
        expected = data.get("expected_revision")
        if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool) or expected < 1):
            return problem(400, "expected_revision must be a positive integer")
        record = await self.store.record(request.params["id"])
        if record is None:
            return problem(404, "no such comment")
        if expected is not None and record.revision != expected:
            return problem(
                409, f"the comment changed since revision {expected}: it is {record.status} now",
                id=record.id, comment_status=record.status, revision=record.revision, actor=record.actor,
            )
        target = ACTION_STATUS[action]
        if record.status == target:
            return json_response({"id": record.id, "status": record.status, "changed": False})
        if action == "approve":
            refusal = await self._approval_refused(record)
            if refusal is not None:
                return refusal
        await self._send([record], action, moderator, reason, expected)
        return json_response(
            {"id": record.id, "action": action, "status": target, "previous_status": record.status,
             "changed": True},
            202,
        )

    async def bulk(self, request: Request) -> Response:
        data = json_body(request)
        action = data.get("action")
        if action not in ("approve", "reject", "spam", "restore"):
            return problem(400, "action must be approve, reject, spam or restore")
        moderator = _text(data, "moderator", 100) or "moderator"
        reason = _text(data, "reason", 500)
        ids = data.get("ids")
        near = data.get("near_key")
        if ids is not None:
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or len(ids) > MAX_BULK:
                return problem(400, f"ids must be a list of at most {MAX_BULK} comment ids")
            statuses: Sequence[str] = STATUSES
        elif isinstance(near, str) and near:
            ids = await self.store.near_ids(near)
            statuses = data.get("statuses") or WORK_STATUSES
            if not isinstance(statuses, list | tuple) or not set(statuses) <= set(STATUSES):
                return problem(400, f"statuses must be a list of {', '.join(STATUSES)}")
            # The audit trail says the decision was taken for a group, not comment by comment.
            reason = f"{reason} (near-identical group)" if reason else "near-identical group"
        else:
            return problem(400, "give ids or near_key")
        revisions = data.get("revisions") or {}
        if not isinstance(revisions, dict) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in revisions.values()
        ):
            return problem(400, "revisions must map comment ids to the revisions they were decided on")
        unique = list(dict.fromkeys(ids))[:MAX_BULK]
        records = await self.store.records(unique)
        target = ACTION_STATUS[action]
        found = [r for r in records if r is not None]
        candidates = [r for r in found if r.status in statuses and r.status != target]
        refused: list[dict[str, Any]] = []
        chosen: list[CommentRecord] = []
        for record in candidates:  # the single route's refusals hold for a selection too
            seen = revisions.get(record.id)
            if seen is not None and seen != record.revision:
                error = f"the comment changed since revision {seen}: it is {record.status} now"
                refused.append({"id": record.id, "error": error})
                continue
            refusal = await self._approval_refused(record) if action == "approve" else None
            if refusal is None:
                chosen.append(record)
            else:
                refused.append({"id": record.id, "error": json.loads(refusal.body)["error"]})
        await self._send(chosen, action, moderator, reason, revisions)
        return json_response(
            {
                "action": action,
                "accepted": [r.id for r in chosen],
                "unchanged": [r.id for r in found if r not in candidates],
                "refused": refused,
                "unknown": [i for i, r in zip(unique, records, strict=True) if r is None],
            },
            202,
        )

    async def _approval_refused(self, record: CommentRecord) -> Response | None:
        """An approval that would publish what moderation already refused: a banned author's comment, or a reply
        whose parent is not on the page (it would show out of its thread)."""
        banned = await self.store.bans_of(record)
        if banned:
            return problem(409, f"the author's {' and '.join(banned)} is banned: reject the comment instead",
                           id=record.id, banned=banned)
        if record.parent_id is not None:
            parent = await self.store.record(record.parent_id)
            if parent is None or parent.status != "approved":
                parent_status = parent.status if parent is not None else "unknown"
                return problem(
                    409, f"this reply answers a comment that is {parent_status}: approve that one first",
                    id=record.id, parent_id=record.parent_id, parent_status=parent_status,
                )
        return None

    async def _send(
        self, records: Sequence[CommentRecord], action: str, moderator: str, reason: str | None,
        expected_revision: int | Mapping[str, int] | None = None,
    ) -> None:
        """`expected_revision`: one for every record, or per comment id (a selection)."""
        now = datetime.now(UTC)
        await self._publish([
            (
                record.article_guid,
                ModerationAction(
                    action_id=uuid.uuid4().hex,
                    id=record.id,
                    article_guid=record.article_guid,
                    action=action,
                    moderator=moderator,
                    reason=reason,
                    requested_at=now,
                    expected_revision=(
                        expected_revision.get(record.id) if isinstance(expected_revision, Mapping)
                        else expected_revision
                    ),
                ),
            )
            for record in records
        ])

    async def _publish(
        self,
        keyed: Sequence[tuple[str, ModerationAction | ModerationBan | ModerationBanLifted | ModerationPremoderation]],
    ) -> None:
        """Produce to the submissions topic and wait until Kafka has acknowledged every event."""
        futures = [
            await self.broker.publish(
                json_bytes(event),
                topic=self.submissions_topic,
                key=key.encode(),
                headers={"content-type": "application/json"},
                no_confirm=True,
            )
            for key, event in keyed
        ]
        if futures:
            await asyncio.gather(*futures)

    async def ban(self, request: Request) -> Response:
        return await self._ban(request, lifted=False)

    async def lift_ban(self, request: Request) -> Response:
        return await self._ban(request, lifted=True)

    async def _ban(self, request: Request, *, lifted: bool) -> Response:
        data = json_body(request)
        email = _text(data, "email", 254)
        ip = _text(data, "ip", 64)
        comment_id = _text(data, "comment_id", 200)
        moderator = _text(data, "moderator", 100) or "moderator"
        reason = _text(data, "reason", 500)
        bans: list[tuple[str, Literal["email", "ip"], str]] = []  # (what the answer calls it, kind, hash)
        if email:
            if "@" not in email:
                return problem(400, "email is not an address")
            bans.append(("email", "email", self.hasher.email(email)))
        if ip:
            bans.append(("ip", "ip", self.hasher.ip(ip)))
        if comment_id:
            record = await self.store.record(comment_id)
            if record is None:
                return problem(404, "no such comment")
            bans.append(("author", "email", record.email_hash))
            if data.get("with_ip") is True and record.ip_hash:
                bans.append(("ip", "ip", record.ip_hash))
        if not bans:
            return problem(400, 'give "email", "ip" or "comment_id"')
        now = datetime.now(UTC)
        event_type = ModerationBanLifted if lifted else ModerationBan
        events = [
            event_type(
                ban_id=uuid.uuid4().hex, kind=kind, hash=hashed, comment_id=comment_id or None, moderator=moderator,
                reason=reason, requested_at=now,
            )
            for _, kind, hashed in bans
        ]
        # The event is the record of the ban (who, when, what, why) and what a replay applies again, keyed by the
        # address's hash so that a ban and its lifting replay in order; applied here too, so the author's next
        # comment meets it whichever partition it lands on.
        await self._publish([(event.hash, event) for event in events])
        for event in events:
            await (self.store.lift_ban if lifted else self.store.ban)(event.kind, event.hash)
        labels = [label for label, _, _ in bans]
        return json_response({"lifted": labels}) if lifted else json_response({"banned": labels}, 201)

    async def premoderation(self, request: Request) -> Response:
        data = json_body(request)
        on = data.get("on")
        if not isinstance(on, bool):
            return problem(400, '"on" must be true or false')
        article = _text(data, "article", 500)
        section = _text(data, "section", 200)
        if not article and not section:
            return problem(400, 'give "article" or "section"')
        if article and await self.articles.get(article) is None:
            return problem(404, "article not known to moderation")
        switch = ModerationPremoderation(
            switch_id=uuid.uuid4().hex, article_guid=article or None, section=None if article else section, on=on,
            moderator=_text(data, "moderator", 100) or "moderator", reason=_text(data, "reason", 500),
            requested_at=datetime.now(UTC),
        )
        # The event is the audit record and what a replay applies; applied here too, to take effect at once.
        await self._publish([(article or f"section:{section}", switch)])
        if article:
            await self.store.set_article_premoderation(article, on)
            return json_response({"article": article, "premoderated": on})
        await self.store.set_section_premoderation(section or "", on)
        return json_response({"section": section, "premoderated": on})


def _newest_first(record: CommentRecord) -> tuple[float, str]:
    return (-datetime.fromisoformat(record.submitted_at).timestamp(), record.id)
