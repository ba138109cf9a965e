"""The comments service's Redis view: one record per comment, the moderation queues and the author history.

Key layout (all under the namespace, e.g. `bs`; braces are Redis Cluster hash tags):

| key | type | what |
|---|---|---|
| `bs:comments:{c:ID}` | hash | `revision`, `status`, `data` (the record as JSON) — the only copy of a comment here |
| `bs:comments:{c:ID}:reporters` | set | opaque reader hashes that reported the comment |
| `bs:comments:{queue}:STATUS` | sorted set | comment ids by submission time, one set per status |
| `bs:comments:{a:EMAIL_HASH}` | hash | `approved` (a trusted author), `b:GUID:TEXT_HASH` → id of its comment |
| `bs:comments:{recent}:MINUTE` | hash | `e:EMAIL_HASH` / `i:IP_HASH` → `TIME ID` of the last comment (expires) |
| `bs:comments:{n:NEAR_KEY}` | set | ids of near-identical comments (bulk moderation of a wave) |
| `bs:comments:{bans}:email`, `…:ip` | set | hashed banned addresses |
| `bs:comments:{premod}:sections` | hash | section code → `1` when the section is pre-moderated |
| `bs:comments:{GUID}:article` | hash | article state (`articles.py`), `premoderated` (a moderator's), `surge` |
| `bs:comments:{GUID}:surge` | string | the article's surge-detector state (JSON) |
| `bs:comments:{surge}:on` | set | guids of the articles in a surge now |
| `bs:comments:built` | string | set once the view is complete (rebuilt from the log when missing: `recovery.py`) |

E-mail addresses and IPs are stored only as keyed hashes. A record is written once per revision: creating it is
fenced by its absence and every later change by the revision it replaces, so a redelivered event or a stale
replica changes nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, cast

import pydantic_core
import redis.asyncio as aioredis

from shared.redis import tagged

STATUSES: tuple[str, ...] = ("pending", "reported", "approved", "rejected", "spam", "removed")
QUEUE_KEEP = 20_000
"""Newest entries kept in the approved, rejected and spam queues (the work queues are never trimmed)."""
TRIMMED_QUEUES = frozenset({"approved", "rejected", "spam", "removed"})
MAX_HISTORY = 50
MAX_ACTIONS = 50

CREATE_RECORD = """
-- KEYS: record   ARGV: revision, status, data
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'status', ARGV[2], 'data', ARGV[3])
return 1
"""

UPDATE_RECORD = """
-- KEYS: record   ARGV: expected revision, new revision, status, data
local current = tonumber(redis.call('HGET', KEYS[1], 'revision') or '-1')
if current ~= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[2], 'status', ARGV[3], 'data', ARGV[4])
return 1
"""


REBUILD_RECORD = """
-- KEYS: record   ARGV: revision, status, data (a record rebuilt from the log: never over a newer revision)
local current = tonumber(redis.call('HGET', KEYS[1], 'revision') or '-1')
if current >= tonumber(ARGV[1]) then return 0 end
redis.call('HSET', KEYS[1], 'revision', ARGV[1], 'status', ARGV[2], 'data', ARGV[3])
return 1
"""

@dataclass
class HistoryEntry:
    revision: int
    status: str
    actor: str
    at: str
    reasons: list[str]


@dataclass
class CommentRecord:
    """What moderation keeps of one comment. Never the e-mail or IP themselves: only their keyed hashes."""

    id: str
    article_guid: str
    status: str
    revision: int
    reasons: list[str]
    actor: str
    decided_at: str
    author: str
    author_url: str | None
    body: str
    body_html: str
    submitted_at: str
    parent_id: str | None
    depth: int
    email_hash: str
    ip_hash: str | None
    near_key: str
    spam_score: float | None
    history: list[HistoryEntry] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    reports: int = 0

    def to_json(self) -> bytes:
        """UTF-8 JSON, as Redis stores it (the same compact JSON as `json.dumps`, written in Rust)."""
        data = dict(self.__dict__)
        data["history"] = [entry.__dict__ for entry in self.history]
        return pydantic_core.to_json(data)

    @classmethod
    def from_json(cls, raw: bytes | str) -> CommentRecord:
        data: dict[str, Any] = json.loads(raw)
        data["history"] = [HistoryEntry(**entry) for entry in data.get("history", [])]
        return cls(**data)

    def public(self, near_count: int | None = None) -> dict[str, Any]:
        """What the moderation API shows: everything but the hashes of the address and the IP."""
        view = asdict(self)
        del view["email_hash"], view["ip_hash"], view["actions"]
        if near_count is not None:
            view["near_count"] = near_count
        return view

    def decided(self, status: str, revision: int, actor: str, at: str, reasons: Sequence[str]) -> CommentRecord:
        """The record after one more decision (the history keeps the newest `MAX_HISTORY`)."""
        entry = HistoryEntry(revision, status, actor, at, list(reasons))
        return replace(
            self,
            status=status,
            revision=revision,
            actor=actor,
            decided_at=at,
            reasons=list(reasons),
            history=[*self.history, entry][-MAX_HISTORY:],
            actions=list(self.actions),
        )


class Hasher:
    """Keyed hashes of e-mail addresses and IPs: stable, comparable, and useless without the key.

    HMAC-SHA256, keyed once: each hash copies the keyed state instead of keying OpenSSL again, and the
    hashes of the last few thousand addresses are remembered (regular commenters come back batch after batch,
    and a rebuild hashes every submission of the log).
    """

    REMEMBERED = 4096

    def __init__(self, key: str) -> None:
        self.key = key.encode()
        self._keyed = hmac.new(self.key, digestmod=hashlib.sha256)
        self._known: dict[str, str] = {}

    def _digest(self, kind: str, value: str) -> str:
        message = f"{kind}:{value}"
        known = self._known.get(message)
        if known is None:
            mac = self._keyed.copy()
            mac.update(message.encode())
            known = mac.hexdigest()[:32]
            if len(self._known) >= self.REMEMBERED:
                self._known.clear()
            self._known[message] = known
        return known

    def email(self, address: str) -> str:
        return self._digest("email", address.strip().casefold())

    def ip(self, address: str) -> str:
        return self._digest("ip", address.strip().lower())

    def reader(self, opaque: str) -> str:
        return self._digest("reader", opaque)


class CommentStore:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = namespace
        self.create_script = client.register_script(CREATE_RECORD)
        self.update_script = client.register_script(UPDATE_RECORD)
        self.rebuild_script = client.register_script(REBUILD_RECORD)

    # keys
    def record_key(self, comment_id: str) -> str:
        return tagged(self.ns, "comments", f"c:{comment_id}")

    def reporters_key(self, comment_id: str) -> str:
        return tagged(self.ns, "comments", f"c:{comment_id}", "reporters")

    def queue_key(self, status: str) -> str:
        return tagged(self.ns, "comments", "queue", status)

    def author_key(self, email_hash: str) -> str:
        return tagged(self.ns, "comments", f"a:{email_hash}")

    def recent_key(self, minute: int) -> str:
        return tagged(self.ns, "comments", "recent", str(minute))

    def near_key(self, key: str) -> str:
        return tagged(self.ns, "comments", f"n:{key}")

    def bans_key(self, kind: str) -> str:
        return tagged(self.ns, "comments", "bans", kind)

    def section_premod_key(self) -> str:
        return tagged(self.ns, "comments", "premod", "sections")

    def article_key(self, guid: str) -> str:
        return tagged(self.ns, "comments", guid, "article")

    def surging_key(self) -> str:
        """The articles in a surge now: a replica taking over a quiet one finds it here."""
        return tagged(self.ns, "comments", "surge", "on")

    def surge_key(self, guid: str) -> str:
        return tagged(self.ns, "comments", guid, "surge")

    # reads
    async def record(self, comment_id: str) -> CommentRecord | None:
        raw = cast(bytes | None, await self.redis.hget(self.record_key(comment_id), "data"))
        return CommentRecord.from_json(raw) if raw else None

    async def records(self, ids: Sequence[str]) -> list[CommentRecord | None]:
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for comment_id in ids:
                pipe.hget(self.record_key(comment_id), "data")
            raws = cast(list[bytes | None], await pipe.execute())
        return [CommentRecord.from_json(raw) if raw else None for raw in raws]

    async def queue(self, status: str, limit: int, before: float | None = None) -> list[str]:
        """Ids in a queue, newest first; `before` pages on submission time (epoch seconds, exclusive)."""
        top: str | float = f"({before}" if before is not None else "+inf"
        raw = await self.redis.zrevrangebyscore(self.queue_key(status), top, "-inf", start=0, num=limit)
        return [member.decode() for member in cast(list[bytes], raw)]

    async def queue_size(self, status: str) -> int:
        return int(await self.redis.zcard(self.queue_key(status)))

    async def near_ids(self, key: str) -> list[str]:
        raw = cast(set[bytes], await self.redis.smembers(self.near_key(key)))
        return sorted(member.decode() for member in raw)

    async def near_counts(self, keys: Iterable[str]) -> dict[str, int]:
        unique = sorted(set(keys))
        if not unique:
            return {}
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in unique:
                pipe.scard(self.near_key(key))
            counts = cast(list[int], await pipe.execute())
        return dict(zip(unique, (int(c) for c in counts), strict=True))

    # writes outside the event flow (moderator state)
    async def ban(self, kind: str, hashed: str) -> bool:
        return bool(await self.redis.sadd(self.bans_key(kind), hashed))

    async def lift_ban(self, kind: str, hashed: str) -> bool:
        return bool(await self.redis.srem(self.bans_key(kind), hashed))

    async def bans_of(self, record: CommentRecord) -> list[str]:
        """Which of the comment's author's e-mail and IP are banned ("email", "ip")."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.sismember(self.bans_key("email"), record.email_hash)
            pipe.sismember(self.bans_key("ip"), record.ip_hash or "")
            email, ip = await pipe.execute()
        return [kind for kind, banned in (("email", email), ("ip", ip and record.ip_hash)) if banned]

    async def set_section_premoderation(self, section: str, on: bool) -> None:
        if on:
            await self.redis.hset(self.section_premod_key(), section, "1")
        else:
            await self.redis.hdel(self.section_premod_key(), section)

    async def set_article_premoderation(self, guid: str, on: bool) -> None:
        await self.redis.hset(self.article_key(guid), "premoderated", "1" if on else "0")

    async def section_premoderation(self) -> set[str]:
        raw = cast(dict[bytes, bytes], await self.redis.hgetall(self.section_premod_key()))
        return {k.decode() for k, v in raw.items() if v == b"1"}

    async def add_reporter(self, comment_id: str, reporter: str) -> int:
        """Remember one reader's report; returns how many distinct readers reported the comment."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.sadd(self.reporters_key(comment_id), reporter)
            pipe.scard(self.reporters_key(comment_id))
            _, count = await pipe.execute()
        return int(count)
