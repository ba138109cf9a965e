"""The publisher's Redis view: article state fenced by version, and finished pages fenced by a render stamp.

Two kinds of keys (all under the namespace, e.g. `bs`):
- per article, hash-tagged by guid so one script can touch them together:
  `bs:pub:{guid}:meta` (hash: version, status, url_path, stamp, related_offset, lists, and superseded_by,
  superseded_version, superseded_path: the rewrite that took the story over, and where it lives),
  `bs:pub:{guid}:article` (the ArticlePublished JSON), `bs:pub:{guid}:related` (links JSON),
  `bs:pub:{guid}:comments` (hash: comment id → CommentDecided JSON, fenced by the decision's revision),
  `bs:pub:{guid}:summary` (what lists, feeds and Check Also show of it),
  `bs:pub:{guid}:linked_from` (hash: guid of an article whose stored Check Also links point here → offset of
  those links), so a kill, withdrawal or first publication re-renders them; entries whose links moved on are
  dropped when it is read.
- per public URL: `bs:page:{path}` (hash: body or gz, etag, lm, ct, status, loc, owner, stamp), one key per
  page so readers fetch a page with one HGETALL and never see a half-written one (the hash is replaced in a
  single script).

Every change to an article bumps its `stamp`; a page is written only if its stamp is newer than the stamp of
the page already stored, so a consumer that lost its partition in a rebalance cannot overwrite newer work.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from typing import Any, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from shared.redis import hgetall, tagged

APPLY_ARTICLE = """
-- KEYS: meta, article, summary, linked_from   ARGV: version, status, url_path, article_json, summary_json
-- Returns the new stamp, the lists the article was in, the summary it replaced ('' when none), the guid of
-- the rewrite that superseded the story ('' when none: then its summary is not stored), and how many articles
-- link to it (read with the status change, so a page linking here after it reads the new status itself).
-- Same version: only a step forward in the lifecycle counts (an embargoed story released at its version).
local rank = {withdrawn = 0, published = 1, killed = 2}
local linked = redis.call('HLEN', KEYS[4])
local status = redis.call('HGET', KEYS[1], 'status')
if status == 'killed' then return {0, '', '', '', linked} end
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '-1')
local version = tonumber(ARGV[1])
if version < current then return {0, '', '', '', linked} end
if version == current and rank[ARGV[2]] <= (rank[status] or -1) then return {0, '', '', '', linked} end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'status', ARGV[2])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'url_path', ARGV[3]) end
if ARGV[4] ~= '' then redis.call('SET', KEYS[2], ARGV[4]) end
local superseded = redis.call('HGET', KEYS[1], 'superseded_by') or ''
local previous = ''
if ARGV[5] ~= '' and superseded == '' then previous = redis.call('SET', KEYS[3], ARGV[5], 'GET') or '' end
return {redis.call('HINCRBY', KEYS[1], 'stamp', 1), redis.call('HGET', KEYS[1], 'lists') or '', previous, superseded,
        linked}
"""

APPLY_RELATED = """
-- KEYS: meta, related   ARGV: source offset, links_json
local current = tonumber(redis.call('HGET', KEYS[1], 'related_offset') or '-1')
if tonumber(ARGV[1]) <= current then return 0 end
redis.call('HSET', KEYS[1], 'related_offset', ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return redis.call('HINCRBY', KEYS[1], 'stamp', 1)
"""

APPLY_COMMENT = """
-- KEYS: meta, comments, revisions   ARGV: comment id, revision, comment_json, visible_before_or_after ('1' re-render)
local current = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '-1')
if tonumber(ARGV[2]) <= current then return 0 end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
local before = redis.call('HGET', KEYS[2], ARGV[1])
local was_public = before and string.find(before, '"status":"approved"', 1, true) ~= nil
local is_public = string.find(ARGV[3], '"status":"approved"', 1, true) ~= nil
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
if was_public or is_public then return redis.call('HINCRBY', KEYS[1], 'stamp', 1) end
return -1
"""

WRITE_PAGE = """
-- KEYS: page   ARGV: owner, stamp, then field/value pairs
local owner = redis.call('HGET', KEYS[1], 'owner')
local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp') or '-1')
if owner == ARGV[1] and tonumber(ARGV[2]) <= stamp then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'stamp', ARGV[2], unpack(ARGV, 3))
return 1
"""

DELETE_PAGE = """
-- KEYS: page   ARGV: owner, stamp  (only the owner at a newer stamp may delete)
local owner = redis.call('HGET', KEYS[1], 'owner')
if owner and owner ~= ARGV[1] then return 0 end
local stamp = tonumber(redis.call('HGET', KEYS[1], 'stamp') or '-1')
if tonumber(ARGV[2]) <= stamp then return 0 end
redis.call('DEL', KEYS[1])
return 1
"""


LIST_UPSERT = """
-- KEYS: zset, stamp, title   ARGV: guid, score, force ('1' when what the list shows of it changed), title
local old = redis.call('ZSCORE', KEYS[1], ARGV[1])
if old and tonumber(old) == tonumber(ARGV[2]) and ARGV[3] == '0' then return {-2, -2, 0, 0} end
local old_rank = redis.call('ZRANK', KEYS[1], ARGV[1]) or -1
local count_before = redis.call('ZCARD', KEYS[1])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('SET', KEYS[3], ARGV[4])
local new_rank = redis.call('ZRANK', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return {old_rank, new_rank, count_before, redis.call('ZCARD', KEYS[1])}
"""

LIST_REMOVE = """
-- KEYS: zset, stamp   ARGV: guid
local rank = redis.call('ZRANK', KEYS[1], ARGV[1])
if not rank then return {-2, -2, 0, 0} end
local count_before = redis.call('ZCARD', KEYS[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('INCR', KEYS[2])
return {rank, -1, count_before, redis.call('ZCARD', KEYS[1])}
"""

SET_FIELD = """
-- KEYS: hash   ARGV: field, value  (a plain HSET, as a script so it can share a pipeline of scripts)
return redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
"""

LIST_STATE = """
-- KEYS: meta   The state an article's list memberships follow: version, status and the rewrite that took it over.
local state = redis.call('HMGET', KEYS[1], 'version', 'status', 'superseded_by')
for i = 1, 3 do if not state[i] then state[i] = '' end end
return state
"""

MARK_SUPERSEDED = """
-- KEYS: meta   ARGV: guid, version and url_path of the rewrite. Kept even before the story itself arrives (a
-- replay's order). The rewrite's path is where the story's redirects lead; fenced by the rewrite's version, so
-- a redelivered older rewrite cannot send them back to a path it has since left.
local by = redis.call('HGET', KEYS[1], 'superseded_by')
local version = tonumber(redis.call('HGET', KEYS[1], 'superseded_version') or '-1')
if by == ARGV[1] and tonumber(ARGV[2]) <= version then return 0 end
redis.call('HSET', KEYS[1], 'superseded_by', ARGV[1], 'superseded_version', ARGV[2], 'superseded_path', ARGV[3])
return redis.call('HINCRBY', KEYS[1], 'stamp', 1)
"""

NOTE_LINKED = """
-- KEYS: linked_from of a linked article   ARGV: guid of the linking article, offset of its links
-- Noted after the links are stored, at the offset they were stored at (the highest wins).
local at = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > at then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
return 1
"""

READ_LINKS = """
-- KEYS: meta, related   The links an article holds and the offset they came from, read together.
return {redis.call('HGET', KEYS[1], 'related_offset') or '-1', redis.call('GET', KEYS[2]) or ''}
"""

PRUNE_LINKED = """
-- KEYS: linked_from   ARGV: guid of the linking article, offset of the links read that no longer link here.
-- Kept when noted again since (links stored meanwhile that link here once more).
local at = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if at <= tonumber(ARGV[2]) then return redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
"""

BUMP_STAMP = """
-- KEYS: meta   A page showing something of another article changes: its next render must not be fenced off.
return redis.call('HINCRBY', KEYS[1], 'stamp', 1)
"""

NOTE_PENDING = """
-- KEYS: pending   ARGV: name, pages as JSON, ... : merges each list's pages to render into what is pending.
-- A value is {"p": pages, "s": how many notes made it}; `s` lets a renderer clear only what it rendered.
-- The `~sitemap` entry holds [lowest rank changed, most stories the site had]: merged as min and max.
for i = 1, #ARGV, 2 do
  local name, pages = ARGV[i], cjson.decode(ARGV[i + 1])
  local old = redis.call('HGET', KEYS[1], name)
  local seq = 1
  if old then
    local before = cjson.decode(old)
    seq = before.s + 1
    if name == '~sitemap' then
      pages = {math.min(pages[1], before.p[1]), math.max(pages[2], before.p[2])}
    else
      local seen = {}
      for _, p in ipairs(pages) do seen[p] = true end
      for _, p in ipairs(before.p) do if not seen[p] then table.insert(pages, p); seen[p] = true end end
    end
  end
  redis.call('HSET', KEYS[1], name, cjson.encode({p = pages, s = seq}))
end
return 1
"""

CLEAR_PENDING = """
-- KEYS: pending   ARGV: name, value as read, ... : clears each entry nobody noted anything to since it was read
local cleared = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    cleared = cleared + 1
  end
end
return cleared
"""


@dataclass(frozen=True)
class ListChange:
    """Where a list changed: ranks count from the oldest item (0); -1 means absent."""

    old_rank: int
    new_rank: int
    count_before: int
    count_after: int

    @property
    def changed(self) -> bool:
        return self.old_rank != -2


@dataclass(frozen=True)
class ListState:
    """What an article's list memberships follow, as stored in its meta: version, status, superseding rewrite."""

    version: str
    status: str
    superseded_by: str


@dataclass(frozen=True)
class ListSlice:
    guids: list[str]
    count: int
    stamp: int
    title: str


def linked_guids(links_json: str | bytes) -> set[str]:
    """The guids a stored Check Also list links to."""
    return {str(link["guid"]) for link in json.loads(links_json)}


def page_body(fields: dict[bytes, bytes]) -> bytes:
    """The page's body as readers get it without compression, from the fields stored in Redis."""
    gz = fields.get(b"gz", b"")
    return gzip.decompress(gz) if gz else fields.get(b"body", b"")


def http_date(moment: datetime) -> str:
    return format_datetime(moment.astimezone(tz=None) if moment.tzinfo is None else moment, usegmt=True)


@dataclass(frozen=True)
class Page:
    """A finished HTTP answer as stored in Redis. Bodies are compressed once, at write time."""

    status: int
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    last_modified: str = ""
    location: str = ""

    @property
    def etag(self) -> str:
        return '"' + hashlib.blake2b(self.body, digest_size=12).hexdigest() + '"'

    def fields(self) -> dict[str, bytes | str]:
        """A body worth compressing is stored gzipped only (`gz`): most readers take it as it is, and a replica
        inflates it once when the page enters its cache. That keeps Redis (and every rebuild's traffic) at a
        third of the size. Small bodies are stored as they are (`body`)."""
        compress = len(self.body) > 512
        return {
            "status": str(self.status),
            "body": b"" if compress else self.body,
            "gz": gzip.compress(self.body, compresslevel=6, mtime=0) if compress else b"",
            "etag": self.etag,
            "lm": self.last_modified,
            "ct": self.content_type,
            "loc": self.location,
        }


class PublisherStore:
    def __init__(self, client: aioredis.Redis, namespace: str) -> None:
        self.redis = client
        self.ns = namespace
        self._apply_article = client.register_script(APPLY_ARTICLE)
        self._apply_related = client.register_script(APPLY_RELATED)
        self._apply_comment = client.register_script(APPLY_COMMENT)
        self._write_page = client.register_script(WRITE_PAGE)
        self._delete_page = client.register_script(DELETE_PAGE)
        self._list_upsert = client.register_script(LIST_UPSERT)
        self._list_remove = client.register_script(LIST_REMOVE)
        self._set_field = client.register_script(SET_FIELD)
        self._list_state = client.register_script(LIST_STATE)
        self._note_pending = client.register_script(NOTE_PENDING)
        self._mark_superseded = client.register_script(MARK_SUPERSEDED)
        self._bump_stamp = client.register_script(BUMP_STAMP)
        self._note_linked = client.register_script(NOTE_LINKED)
        self._read_links = client.register_script(READ_LINKS)
        self._prune_linked = client.register_script(PRUNE_LINKED)
        self._clear_pending = client.register_script(CLEAR_PENDING)

    # keys
    def article_key(self, guid: str, part: str) -> str:
        return tagged(self.ns, "pub", guid, part)

    def page_key(self, path: str) -> str:
        return f"{self.ns}:page:{{{path}}}"

    @property
    def page_prefix(self) -> str:
        """What every page key starts with (what the page cache tracks)."""
        return f"{self.ns}:page:{{"

    def list_key(self, name: str, part: str) -> str:
        return f"{self.ns}:pub:{{list:{name}}}:{part}"

    # article state
    async def apply_article(
        self, guid: str, version: int, status: str, url_path: str, article_json: str, summary_json: str = ""
    ) -> tuple[int, list[str] | None, bytes | None, int]:
        """Returns the new stamp, the lists the article was in and, when `summary_json` was stored with it,
        the summary it replaced; last, how many articles link to it. Stamp 0 (lists None) when the event
        changed nothing: it is not newer than what is stored, or the story is dead."""
        keys = [
            self.article_key(guid, "meta"), self.article_key(guid, "article"), self.article_key(guid, "summary"),
            self.article_key(guid, "linked_from"),
        ]
        stamp, lists, previous, superseded, linked = await self._apply_article(
            keys=keys, args=[version, status, url_path, article_json, summary_json]
        )
        if not int(stamp):
            return 0, None, None, int(linked)
        if superseded:
            return int(stamp), None, None, int(linked)  # not the story readers get: the caller reads it back
        return int(stamp), json.loads(lists) if lists else [], previous or None, int(linked)

    async def mark_superseded(self, guid: str, by: str, version: int, url_path: str) -> None:
        """Note that the rewrite `by` (at `version`, living at `url_path`) took over the story `guid`; the
        story's stamp moves on, so what was rendered from its state before is fenced off."""
        await self._mark_superseded(keys=[self.article_key(guid, "meta")], args=[by, version, url_path])

    async def note_linked_from(self, source: str, offset: int, targets: Sequence[str]) -> None:
        """Record that `source`'s links (stored from `offset`) point at each of `targets`. Called once they are
        stored, so whoever reads the index finds them; idempotent, so a replay adds nothing new."""
        await self.run_scripts(
            [(self._note_linked, [self.article_key(target, "linked_from")], [source, offset]) for target in targets]
        )

    async def linked_from(self, target: str) -> list[str]:
        """The articles whose stored links point at `target` now. The ones whose links moved on are dropped
        from the index here (unless noted again meanwhile), so it stays the size of the links stored."""
        key = self.article_key(target, "linked_from")
        sources = sorted(m.decode() for m in cast(dict[bytes, bytes], await self.redis.hgetall(key)))
        if not sources:
            return []
        stored = await self.run_scripts([
            (self._read_links, [self.article_key(s, "meta"), self.article_key(s, "related")], []) for s in sources
        ])
        linking: list[str] = []
        prune: list[tuple[AsyncScript, Sequence[str], Sequence[Any]]] = []
        for source, (offset, links_json) in zip(sources, stored, strict=True):
            if links_json and target in linked_guids(links_json):
                linking.append(source)
            else:
                prune.append((self._prune_linked, [key], [source, int(offset)]))
        await self.run_scripts(prune)
        return linking

    async def bump_stamps(self, guids: Sequence[str]) -> None:
        """Move these articles' stamps on, so their pages are rendered again though their own state is not."""
        await self.run_scripts([(self._bump_stamp, [self.article_key(g, "meta")], []) for g in guids])

    async def statuses(self, guids: Sequence[str]) -> list[str]:
        """Each article's lifecycle status as the publisher holds it ('' when it never met the story)."""
        if not guids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for guid in guids:
                pipe.hget(self.article_key(guid, "meta"), "status")
            found: list[bytes | None] = await pipe.execute()
        return [(status or b"").decode() for status in found]

    async def apply_related(self, guid: str, offset: int, links_json: str) -> int:
        keys = [self.article_key(guid, "meta"), self.article_key(guid, "related")]
        return int(await self._apply_related(keys=keys, args=[offset, links_json]))

    async def apply_comment(self, guid: str, comment_id: str, revision: int, comment_json: str) -> int:
        """Returns the new stamp when the page changes (approved or removed), -1 when it does not, 0 if stale."""
        keys = [
            self.article_key(guid, "meta"),
            self.article_key(guid, "comments"),
            self.article_key(guid, "comment_revisions"),
        ]
        return int(await self._apply_comment(keys=keys, args=[comment_id, revision, comment_json]))

    async def meta(self, guid: str) -> dict[str, str]:
        raw = await hgetall(self.redis, self.article_key(guid, "meta"))
        return {k.decode(): v.decode() for k, v in raw.items()}

    async def article_bundle(self, guid: str) -> tuple[dict[str, str], bytes | None, bytes | None, list[bytes]]:
        """Meta, article JSON, related JSON and comment JSONs, read together (one slot, one round trip)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self.article_key(guid, "meta"))
            pipe.get(self.article_key(guid, "article"))
            pipe.get(self.article_key(guid, "related"))
            pipe.hvals(self.article_key(guid, "comments"))
            meta_raw, article, related, comments = await pipe.execute()
        meta = {k.decode(): v.decode() for k, v in meta_raw.items()}
        return meta, article, related, list(comments)

    async def swap_summary(self, guid: str, summary_json: str | None) -> bytes | None:
        """Store the summary (or delete it); returns the previous one so callers know what changed."""
        key = self.article_key(guid, "summary")
        if summary_json is None:
            return cast(bytes | None, await self.redis.getdel(key))
        return cast(bytes | None, await self.redis.set(key, summary_json, get=True))

    async def summaries(self, guids: Sequence[str]) -> list[bytes | None]:
        if not guids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for guid in guids:
                pipe.get(self.article_key(guid, "summary"))
            return cast(list[bytes | None], await pipe.execute())

    async def run_scripts(self, calls: Sequence[tuple[AsyncScript, Sequence[str], Sequence[Any]]]) -> list[Any]:
        """Several scripts in one round trip (a pipeline, not a transaction: each script is atomic on its own
        keys, which may live on different cluster slots). A script the server lost (restart, SCRIPT FLUSH)
        did not run: it is loaded and that call alone is sent again."""
        if not calls:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            results: list[Any] = await pipe.execute(raise_on_error=False)
        for index, result in enumerate(results):
            if isinstance(result, NoScriptError):
                script, keys, args = calls[index]
                results[index] = await script(keys=list(keys), args=list(args))
            elif isinstance(result, Exception):
                raise result
        return results

    async def update_lists(
        self, guid: str, *, upserts: Sequence[tuple[str, str]], removals: Sequence[str], score: float,
        force: bool, lists_after: Sequence[str] | None,
    ) -> tuple[list[tuple[str, ListChange]], ListState]:
        """One article's list memberships in one round trip: `removals` left, `upserts` (name, title) entered
        or moved (re-shown when `force`), and the article's own record of its lists set to `lists_after`.

        Also returns the article's list state as it stands once all that is written: when it is not the state
        the changes were computed from, another consumer changed the article meanwhile (a rewrite superseding
        it, from another partition) and the caller computes them again."""
        calls: list[tuple[AsyncScript, Sequence[str], Sequence[Any]]] = []
        for name in removals:
            calls.append((self._list_remove, [self.list_key(name, "z"), self.list_key(name, "stamp")], [guid]))
        for name, title in upserts:
            keys = [self.list_key(name, "z"), self.list_key(name, "stamp"), self.list_key(name, "title")]
            calls.append((self._list_upsert, keys, [guid, repr(score), "1" if force else "0", title]))
        if lists_after is not None:
            record = ["lists", json.dumps(sorted(lists_after))]
            calls.append((self._set_field, [self.article_key(guid, "meta")], record))
        calls.append((self._list_state, [self.article_key(guid, "meta")], []))  # last: read after the writes
        names = [*removals, *(name for name, _ in upserts)]
        results = await self.run_scripts(calls)
        answers = zip(names, results[: len(names)], strict=True)
        changes = [(name, ListChange(*(int(x) for x in raw))) for name, raw in answers]
        return changes, ListState(*(field.decode() for field in results[-1]))

    # pages to render later: lists, feeds and sitemaps, noted durably so that no crash loses them
    @property
    def pending_key(self) -> str:
        return f"{self.ns}:pub:{{render}}:pending"

    async def note_pending(self, entries: dict[str, list[int]]) -> None:
        if not entries:
            return
        args: list[str] = []
        for name, pages in sorted(entries.items()):
            args.extend([name, json.dumps(pages)])
        await self._note_pending(keys=[self.pending_key], args=args)

    async def pending(self) -> dict[str, tuple[list[int], bytes]]:
        """What is pending: name → (pages, the value as read, to clear it with)."""
        raw = await hgetall(self.redis, self.pending_key)
        return {name.decode(): (list(json.loads(value)["p"]), value) for name, value in raw.items()}

    async def clear_pending(self, rendered: dict[str, bytes]) -> int:
        if not rendered:
            return 0
        args: list[Any] = []
        for name, value in rendered.items():
            args.extend([name, value])
        return int(await self._clear_pending(keys=[self.pending_key], args=args))

    # lists (home, section:x, author:y, tag:z): sorted sets by publication time, oldest first
    async def list_slice(self, name: str, start: int, stop: int) -> ListSlice:
        """Items by rank from the oldest, `start`..`stop` inclusive, with the stamp they were read at."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrange(self.list_key(name, "z"), start, stop)
            pipe.zcard(self.list_key(name, "z"))
            pipe.get(self.list_key(name, "stamp"))
            pipe.get(self.list_key(name, "title"))
            members, count, stamp, title = await pipe.execute()
        return ListSlice(
            [m.decode() for m in members], int(count), int(stamp or 0), (title or b"").decode()
        )

    async def list_since(self, name: str, min_score: float, limit: int) -> ListSlice:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.zrangebyscore(self.list_key(name, "z"), min_score, "+inf")
            pipe.zcard(self.list_key(name, "z"))
            pipe.incr(self.list_key(name, "news_stamp"))
            members, count, stamp = await pipe.execute()
        return ListSlice([m.decode() for m in members][-limit:], int(count), int(stamp), "")

    async def sitemap_lastmods(self, updates: dict[int, str] | None = None) -> dict[int, str]:
        key = self.list_key("home", "sitemaps")
        if updates:
            await self.redis.hset(key, mapping={str(k): v for k, v in updates.items()})
        raw = await hgetall(self.redis, key)
        return {int(k): v.decode() for k, v in raw.items()}

    # pages
    async def write_page(self, path: str, owner: str, stamp: int, page: Page) -> bool:
        return (await self.write_pages([(path, owner, stamp, page)]))[0]

    async def write_pages(self, pages: Sequence[tuple[str, str, int, Page]]) -> list[bool]:
        """Each page (path, owner, stamp, page) fenced on its own; all of them in one round trip."""
        calls: list[tuple[AsyncScript, Sequence[str], Sequence[Any]]] = []
        for path, owner, stamp, page in pages:
            args: list[Any] = [owner, stamp]
            for name, value in page.fields().items():
                args.extend([name, value])
            calls.append((self._write_page, [self.page_key(path)], args))
        return [bool(result) for result in await self.run_scripts(calls)]

    async def delete_page(self, path: str, owner: str, stamp: int) -> bool:
        return bool(await self._delete_page(keys=[self.page_key(path)], args=[owner, stamp]))

    async def read_page(self, path: str) -> dict[bytes, bytes]:
        return await hgetall(self.redis, self.page_key(path))

    async def read_pages(self, paths: Sequence[str]) -> list[dict[bytes, bytes]]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for path in paths:
                pipe.hgetall(self.page_key(path))
            results: list[dict[bytes, bytes]] = await pipe.execute()
        return results
