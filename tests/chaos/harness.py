"""The fault-injection harness: a seeded workload with a history, a reference model, faults and the checks.

    workload  BBC articles (synthetic drafts when ../shared/data is absent) as drafts with several revisions,
              some killed, withheld or embargoed; comments (real ones and spam from the YouTube spam corpus)
              through the publisher's form edge; a moderator approving the real ones; produced at a steady rate.
    history   every operation and its outcome: acked, failed, or unknown (timed out).
    model     per guid, the final states the history allows: the last acknowledged version, or a later one
              whose outcome is not known. Killed, withheld and embargoed stories are never visible; an
              approved comment is shown exactly once.
    checks    pages against the model, held stories absent from every list, feed and sitemap, comments shown
              once, versions never going backwards for a polling reader, every draft record accounted for in
              the log (an article event or a dead letter), consumer lag back to 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import functools
import html
import itertools
import json
import random
import re
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.publisher.comment_edge import comment_id, form_token
from tests.support.drafts import make_draft
from tests.support.stack import ServiceStack

SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
VERSION_RE = re.compile(r'<meta name="broadsheet:version" content="(\d+)">')
COMMENT_ID_RE = re.compile(r'id="comment-([A-Za-z0-9_-]+)"')
SUMMARY_RE = re.compile(r'<article class="summary" data-guid="([^"]+)"')
NEXT_RE = re.compile(r'<link rel="next" href="([^"]+)"')
SECTIONS = ("business", "entertainment", "politics", "sport", "tech")
CONSUMING = ("ingest", "related", "comments", "publisher")
FAR_FUTURE = "2099-01-01T00:00:00Z"
_ip_counter = itertools.count(2)


def reader_ip() -> str:
    """A loopback address of its own per reader (all of 127/8 reaches the host), so per-IP limits apply apart."""
    n = next(_ip_counter)
    return f"127.77.{n // 250}.{n % 250 + 2}"


# --- profiles ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    kind: str  # sigkill | sigstop | broker-kill | redis-flushall | redis-restart | redis-freeze | rolling-restart
    target: str  # a service, "kafka", "redis" or "all"
    points: tuple[float, ...] = (0.4,)
    duration: float = 12.0
    """How long the load runs (seconds); long enough to span the fault and some time after it."""

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.target}"


@dataclass(frozen=True)
class Profile:
    name: str
    stories: int
    comments: int
    faults: tuple[Fault, ...]
    bad_records: int
    valid_records: int
    fuzz_examples: int
    xss_vectors: int | None
    session_timeout: float = 20.0


def profile_named(name: str) -> Profile:
    services = ("ingest", "related", "comments", "publisher")
    if name == "long":
        faults = (
            *(Fault("sigkill", s, (0.2, 0.4, 0.6), 40.0) for s in services),
            Fault("sigstop", "publisher", (0.2,), 50.0),
            Fault("sigstop", "ingest", (0.2,), 50.0),
            Fault("broker-kill", "kafka", (0.3,), 45.0),
            Fault("redis-flushall", "redis", (0.4,), 30.0),
            Fault("redis-restart", "redis", (0.4,), 30.0),
            Fault("redis-freeze", "redis", (0.3,), 40.0),
            Fault("rolling-restart", "all", (0.2,), 60.0),
        )
        return Profile("long", stories=60, comments=40, faults=faults, bad_records=10_000, valid_records=1_000,
                       fuzz_examples=400, xss_vectors=None)
    faults = (
        *(Fault("sigkill", s, (0.4,), 10.0) for s in services),
        Fault("sigstop", "publisher", (0.15,), 34.0),
        Fault("redis-flushall", "redis", (0.4,), 14.0),
        Fault("redis-freeze", "redis", (0.3,), 24.0),
        Fault("broker-kill", "kafka", (0.3,), 24.0),
    )
    return Profile("short", stories=14, comments=8, faults=faults, bad_records=1_000, valid_records=100,
                   fuzz_examples=60, xss_vectors=40)


# --- corpus ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    title: str
    paragraphs: tuple[str, ...]
    section: str
    published: datetime


@functools.lru_cache(maxsize=1)
def corpus() -> tuple[Source, ...]:
    """BBC articles when the shared data is present, else synthetic stories in the same shape."""
    try:
        from bench.corpus_bbc import bbc_available, default_published, load_bbc

        if bbc_available():
            return tuple(
                Source(a.title, a.paragraphs, a.category, default_published(a)) for a in load_bbc()
            )
    except (ImportError, OSError):
        pass
    sources = []
    for i in range(500):
        draft = make_draft(f"synthetic-{i}")
        sources.append(Source(
            draft["headline"], (draft["body_html"],), SECTIONS[i % len(SECTIONS)],
            datetime(2005, 1, 1, tzinfo=UTC) + timedelta(hours=i),
        ))
    return tuple(sources)


@functools.lru_cache(maxsize=1)
def comment_corpus() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(real, spam) comment texts from the YouTube spam collection, or a few of our own when it is absent."""
    real: list[str] = []
    spam: list[str] = []
    folder = SHARED_DATA / "youtube-spam"
    for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
        with path.open(newline="", encoding="utf-8", errors="replace") as handle:
            for row in csv.DictReader(handle):
                text = " ".join((row.get("CONTENT") or "").split())
                if 5 <= len(text) <= 1000:
                    (spam if row.get("CLASS") == "1" else real).append(text)
    if not real:
        real = [f"Thoughtful point about the harbour strike, number {i}." for i in range(50)]
    if not spam:
        spam = [f"CHECK OUT my channel http://spam{i}.example and subscribe!!!" for i in range(50)]
    return tuple(real), tuple(spam)


# --- history -------------------------------------------------------------------------------------------------


@dataclass
class Op:
    kind: str  # draft | comment | approve
    guid: str
    version: int = 0
    status: str = ""  # usable | canceled | withheld | embargoed (drafts); real | spam (comments)
    outcome: str = "pending"  # acked | failed | unknown
    started: float = 0.0
    finished: float = 0.0
    detail: str = ""  # comment id, error text
    partition: int = -1
    offset: int = -1


@dataclass
class History:
    ops: list[Op] = field(default_factory=list)

    def add(self, op: Op) -> Op:
        op.started = time.monotonic()
        self.ops.append(op)
        return op

    def drafts(self) -> list[Op]:
        return [o for o in self.ops if o.kind == "draft"]

    def counts(self) -> dict[str, int]:
        return dict(Counter(f"{o.kind}:{o.outcome}" for o in self.ops))

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps([asdict(o) for o in self.ops], indent=1))


# --- plan ------------------------------------------------------------------------------------------------------


@dataclass
class Story:
    guid: str
    kind: str  # normal | killed | withheld | embargoed
    marker: str
    drafts: list[dict[str, Any]]


def plan_stories(run: str, count: int, seed: int) -> list[Story]:
    rng = random.Random(seed)
    sources = corpus()
    stories = []
    for i in range(count):
        source = sources[rng.randrange(len(sources))]
        kind = rng.choices(("normal", "killed", "withheld", "embargoed"), weights=(60, 15, 10, 15))[0]
        guid = f"{run}-{i:03d}"
        marker = f"zq{uuid.uuid4().hex[:10]}"
        revisions = rng.randint(1, 3)
        # recent, so that comments are open (they close after 14 days) and the news sitemap lists the story
        published = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=rng.randrange(5, 2800))
        drafts = []
        for v in range(1, revisions + 1):
            paragraphs = list(source.paragraphs[:6]) or ["Body."]
            if v > 1:
                paragraphs.append(f"Update {v}: the story was revised.")
            headline = source.title if kind == "normal" else f"{source.title} {marker}"
            draft = make_draft(
                guid, version=v, headline=f"{headline} (v{v})" if v > 1 else headline,
                section=(source.section, source.section.title()), published=published,
                body="",
                byline="BBC News",
            )
            draft["body_html"] = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
            if kind != "normal":
                draft["slugline"] = f"story {marker}"
            if kind == "embargoed":
                draft["embargoed"] = FAR_FUTURE
            drafts.append(draft)
        if kind == "killed":
            drafts.append({**drafts[-1], "version": revisions + 1, "pubstatus": "canceled"})
        elif kind == "withheld":
            drafts.append({**drafts[-1], "version": revisions + 1, "pubstatus": "withheld"})
        stories.append(Story(guid, kind, marker, drafts))
    return stories


def draft_status(draft: dict[str, Any]) -> str:
    if draft.get("pubstatus") in ("canceled", "withheld"):
        return str(draft["pubstatus"])
    return "embargoed" if draft.get("embargoed") else "usable"


def interleave(stories: list[Story], seed: int) -> list[tuple[Story, dict[str, Any]]]:
    """Every story's drafts in version order, the stories interleaved at random."""
    rng = random.Random(seed + 1)
    queues = {s.guid: list(s.drafts) for s in stories}
    by_guid = {s.guid: s for s in stories}
    order: list[tuple[Story, dict[str, Any]]] = []
    while queues:
        guid = rng.choice(sorted(queues))
        order.append((by_guid[guid], queues[guid].pop(0)))
        if not queues[guid]:
            del queues[guid]
    return order


# --- workload ----------------------------------------------------------------------------------------------------


@dataclass
class Workload:
    stack: ServiceStack
    history: History
    stories: list[Story]
    duration: float
    comments: int
    form_secret: str
    moderation_token: str
    seed: int = 0
    publisher_ports: list[int] = field(default_factory=list)
    progress: float = 0.0
    regressions: list[str] = field(default_factory=list)
    comment_ids: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    approved: set[str] = field(default_factory=set)
    real_ids: set[str] = field(default_factory=set)
    _producer: AIOKafkaProducer | None = None
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _inflight: set[asyncio.Task[Any]] = field(default_factory=set)
    _done: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def guids(self) -> list[str]:
        return [s.guid for s in self.stories]

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.kafka, acks="all", enable_idempotence=True, request_timeout_ms=20_000,
            max_request_size=4 * 1024 * 1024,
        )
        await self._producer.start()
        self.publisher_ports = self.publisher_ports or [self.stack.ports["publisher"]]
        self._tasks = [
            asyncio.create_task(self._drafts(), name="chaos-drafts"),
            asyncio.create_task(self._comments(), name="chaos-comments"),
            asyncio.create_task(self._moderator(), name="chaos-moderator"),
            asyncio.create_task(self._reader(), name="chaos-reader"),
        ]

    async def wait_progress(self, fraction: float) -> None:
        while self.progress < fraction and not self._done.is_set():  # noqa: ASYNC110 - progress is a number
            await asyncio.sleep(0.05)

    async def finish(self, within: float = 120) -> None:
        """Wait for the drafts to be sent and every outcome known, then stop the background tasks."""
        await asyncio.wait_for(self._tasks[0], within)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=within)
        await self.stop()

    async def stop(self) -> None:
        self._done.set()
        for task in self._tasks[1:]:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def send_draft(self, draft: dict[str, Any]) -> Op:
        """Produce one draft; the outcome is known later (acked, failed, or unknown after a timeout)."""
        assert self._producer is not None
        op = self.history.add(Op("draft", draft["guid"], int(draft["version"]), draft_status(draft)))
        try:
            future = await asyncio.wait_for(
                self._producer.send(
                    self.stack.topic("newsroom.drafts"), json.dumps(draft).encode(), key=draft["guid"].encode()
                ),
                30,
            )
        except TimeoutError:
            op.outcome, op.finished, op.detail = "unknown", time.monotonic(), "send timed out"
            return op
        except Exception as exc:
            op.outcome, op.finished, op.detail = "failed", time.monotonic(), repr(exc)[:200]
            return op

        async def settle() -> None:
            try:
                meta = await asyncio.wait_for(future, 45)
                op.outcome, op.partition, op.offset = "acked", meta.partition, meta.offset
            except TimeoutError:
                op.outcome, op.detail = "unknown", "no acknowledgement in 45 s"
            except Exception as exc:
                op.outcome, op.detail = "unknown", repr(exc)[:200]
            op.finished = time.monotonic()

        task = asyncio.create_task(settle())
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        return op

    async def _drafts(self) -> None:
        order = interleave(self.stories, self.seed)
        interval = self.duration / max(1, len(order))
        next_at = time.monotonic()
        for i, (_, draft) in enumerate(order):
            await self.send_draft(draft)
            self.progress = (i + 1) / len(order)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    def _published(self) -> list[str]:
        """Normal stories whose first version was acknowledged a little while ago (the edge knows them)."""
        now = time.monotonic()
        normal = {s.guid for s in self.stories if s.kind == "normal"}
        return sorted({
            o.guid for o in self.history.drafts()
            if o.guid in normal and o.outcome == "acked" and now - o.finished > 2.0
        })

    async def _comments(self) -> None:
        rng = random.Random(self.seed + 2)
        real, spam = comment_corpus()
        interval = self.duration / max(1, self.comments)
        sent = 0
        while sent < self.comments and not self._done.is_set():
            await asyncio.sleep(interval)
            targets = self._published()
            if not targets:
                continue
            guid = rng.choice(targets)
            is_spam = rng.random() < 0.3
            body = rng.choice(spam if is_spam else real)
            email = f"r{uuid.uuid4().hex[:10]}@example.org"
            repeat = rng.random() < 0.15
            for _ in range(2 if repeat else 1):  # a double submit must stay one comment
                await self.submit_comment(guid, body, email, "spam" if is_spam else "real")
            sent += 1

    async def submit_comment(self, guid: str, body: str, email: str, kind: str) -> Op:
        cid = comment_id(guid, email, body)
        op = self.history.add(Op("comment", guid, status=kind, detail=cid))
        port = self.publisher_ports[-1]
        data = {
            "comment_post_ID": guid, "comment_parent": "0", "author": f"Reader {email[1:7]}", "email": email,
            "url": "", "comment": body, "website_url": "", "form_token": form_token(self.form_secret, guid),
        }
        try:
            async with httpx.AsyncClient(
                transport=httpx.AsyncHTTPTransport(local_address=reader_ip()), timeout=10
            ) as client:
                response = await client.post(f"http://127.0.0.1:{port}/comments", data=data)
            op.outcome = "acked" if response.status_code == 303 else "failed"
            if response.status_code != 303:
                op.detail = f"{cid} http {response.status_code}"
        except httpx.TimeoutException:
            op.outcome = "unknown"
        except httpx.HTTPError as exc:
            op.outcome, op.detail = "failed", f"{cid} {exc!r}"[:200]
        op.finished = time.monotonic()
        if op.outcome == "acked":
            if cid not in self.comment_ids[guid]:
                self.comment_ids[guid].append(cid)
            if kind == "real":
                self.real_ids.add(cid)
        return op

    async def approve_pending(self, client: httpx.AsyncClient) -> int:
        """Approve our real comments waiting in the pending or spam queue; returns how many were approved."""
        approved = 0
        for status in ("pending", "spam"):
            response = await client.get("/moderation/comments", params={"status": status, "limit": 500})
            if response.status_code != 200:
                continue
            for record in response.json():
                cid = record.get("id")
                if cid not in self.real_ids or cid in self.approved:
                    continue
                op = self.history.add(Op("approve", record.get("article_guid", ""), detail=cid))
                try:
                    answer = await client.post(f"/moderation/comments/{cid}/approve", json={})
                    op.outcome = "acked" if answer.status_code in (200, 202) else "failed"
                except httpx.TimeoutException:
                    op.outcome = "unknown"
                except httpx.HTTPError:
                    op.outcome = "failed"
                op.finished = time.monotonic()
                if op.outcome == "acked":
                    self.approved.add(cid)
                    approved += 1
        return approved

    def moderation_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.stack.url("comments"), timeout=5,
            headers={"Authorization": f"Bearer {self.moderation_token}"},
        )

    async def _moderator(self) -> None:
        async with self.moderation_client() as client:
            while not self._done.is_set():
                await asyncio.sleep(1.0)
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    await self.approve_pending(client)

    async def _reader(self) -> None:
        """A reader polling a few article pages during the fault: the version it sees must never go back."""
        seen: dict[str, int] = {}
        ports = itertools.cycle(range(10_000))
        async with httpx.AsyncClient(timeout=2) as client:
            while not self._done.is_set():
                await asyncio.sleep(0.2)
                watched = self._published()[:6]
                for guid in watched:
                    port = self.publisher_ports[next(ports) % len(self.publisher_ports)]
                    try:
                        first = await client.get(f"http://127.0.0.1:{port}/a/{guid}")
                        if first.status_code != 301:
                            continue
                        page = await client.get(f"http://127.0.0.1:{port}{first.headers['location']}")
                    except httpx.HTTPError:
                        continue
                    found = VERSION_RE.search(page.text) if page.status_code == 200 else None
                    if not found:
                        continue
                    version = int(found.group(1))
                    if version < seen.get(guid, 0):
                        self.regressions.append(f"{guid}: saw v{seen[guid]} then v{version} (port {port})")
                    seen[guid] = max(seen.get(guid, 0), version)


# --- the reference model -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Expected:
    visible: frozenset[int]
    """Versions the page may show; empty when the story must not be visible."""
    hidden_ok: bool
    """Whether the story not being visible is acceptable (never acked, held, killed, or an unknown kill)."""
    must_hide: bool
    """Every acceptable final state hides the story (killed, withheld, embargoed)."""


def expected_states(history: History) -> dict[str, Expected]:
    """Per guid, the final states the history allows. Sends are ordered per guid and versions grow with them,
    so the final state is the one of the highest version that reached the log: the highest acknowledged one,
    or any later one whose outcome is unknown."""
    by_guid: dict[str, list[Op]] = defaultdict(list)
    for op in history.drafts():
        by_guid[op.guid].append(op)
    expected = {}
    for guid, ops in by_guid.items():
        ops.sort(key=lambda o: o.version)
        acked = [o for o in ops if o.outcome == "acked"]
        top = acked[-1] if acked else None
        candidates = ([top] if top else []) + [
            o for o in ops if o.outcome != "acked" and (top is None or o.version > top.version)
        ]
        killed_before = any(o.status == "canceled" for o in acked)
        visible = frozenset(o.version for o in candidates if o.status == "usable" and not killed_before)
        hidden_ok = top is None or any(o.status != "usable" for o in candidates) or killed_before
        must_hide = not visible
        expected[guid] = Expected(visible, hidden_ok, must_hide)
    return expected


# --- observation and checks -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    differing: list[str] = field(default_factory=list)
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.differing)

    def summary(self) -> str:
        return json.dumps({"lost": self.lost[:20], "duplicated": self.duplicated[:20],
                           "differing": self.differing[:20], "notes": self.notes}, indent=1, default=str)


async def fetch_article(client: httpx.AsyncClient, guid: str) -> tuple[int, int | None, str]:
    first = await client.get(f"/a/{guid}")
    if first.status_code != 301:
        return first.status_code, None, first.text
    page = await client.get(first.headers["location"])
    found = VERSION_RE.search(page.text)
    return page.status_code, int(found.group(1)) if found else None, page.text


async def crawl_lists(client: httpx.AsyncClient, sections: set[str]) -> dict[str, str]:
    """Home, sections (every page, following rel=next), feeds and sitemaps: path → body."""
    bodies: dict[str, str] = {}
    starts = ["/", *(f"/section/{s}" for s in sorted(sections))]
    for start in starts:
        path: str | None = start
        while path and path not in bodies and len(bodies) < 400:
            response = await client.get(path)
            if response.status_code != 200:
                break
            bodies[path] = response.text
            found = NEXT_RE.search(response.text)
            path = found.group(1) if found else None
    feeds = ["/feed.xml", "/news-sitemap.xml", "/sitemap.xml", *(f"/section/{s}/feed.xml" for s in sorted(sections))]
    for path in feeds:
        response = await client.get(path)
        if response.status_code == 200:
            bodies[path] = response.text
    if "/sitemap.xml" in bodies:
        with contextlib.suppress(ElementTree.ParseError):
            index = ElementTree.fromstring(bodies["/sitemap.xml"])
            for loc in index.iter("{http://www.sitemaps.org/schemas/sitemap/0.9}loc"):
                part = "/" + (loc.text or "").split("://", 1)[-1].split("/", 1)[-1]
                response = await client.get(part)
                if response.status_code == 200:
                    bodies[part] = response.text
    return bodies


async def check_site(stack: ServiceStack, workload: Workload) -> Verdict:
    """One pass of every check that reads pages; `Verdict.ok` when the site matches the model."""
    verdict = Verdict()
    expected = expected_states(workload.history)
    stories = {s.guid: s for s in workload.stories}
    semaphore = asyncio.Semaphore(12)
    pages: dict[str, tuple[int, int | None, str]] = {}
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:

        async def observe(guid: str) -> None:
            async with semaphore:
                pages[guid] = await fetch_article(client, guid)

        await asyncio.gather(*(observe(g) for g in expected))
        sections = {s.drafts[0]["service"][0]["code"] for s in workload.stories}
        lists = await crawl_lists(client, sections)

    for guid, want in expected.items():
        status, version, body = pages[guid]
        if status == 200 and version is not None:
            if not want.visible:
                verdict.differing.append(f"{guid}: visible at v{version} but must be hidden")
            elif version not in want.visible:
                verdict.differing.append(f"{guid}: shows v{version}, expected one of {sorted(want.visible)}")
        elif want.visible and not want.hidden_ok:
            verdict.lost.append(f"{guid}: page answers {status}, expected v{max(want.visible)}")
        # comments on the page
        shown = Counter(COMMENT_ID_RE.findall(body)) if status == 200 else Counter()
        for cid, n in shown.items():
            if n > 1:
                verdict.duplicated.append(f"{guid}: comment {cid} shown {n} times")
        for cid in workload.comment_ids.get(guid, []):
            if cid in workload.approved and status == 200 and shown[cid] == 0:
                verdict.lost.append(f"{guid}: approved comment {cid} not shown")
            if cid not in workload.approved and shown[cid]:
                verdict.differing.append(f"{guid}: comment {cid} shown without approval")

    hidden_markers = {stories[g].marker: g for g, want in expected.items() if want.must_hide and g in stories}
    for path, text in lists.items():
        for marker, guid in hidden_markers.items():
            if marker in text:
                verdict.differing.append(f"{guid}: held or killed story visible on {path}")
        if not path.endswith(".xml"):
            for guid, n in Counter(SUMMARY_RE.findall(text)).items():
                if n > 1:
                    verdict.duplicated.append(f"{path}: lists {guid} {n} times")
    for line in workload.regressions:
        verdict.differing.append(f"version went backwards: {line}")
    verdict.notes["pages"] = len(pages)
    verdict.notes["lists_crawled"] = len(lists)
    return verdict


async def read_topic(kafka: str, topic: str) -> list[Any]:
    """Every record of a topic, from the beginning to the end offsets of the moment."""
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, enable_auto_commit=False, max_partition_fetch_bytes=8 << 20,
                                fetch_max_bytes=64 << 20)
    await consumer.start()
    records: list[Any] = []
    try:
        parts = None
        for _ in range(50):
            parts = consumer.partitions_for_topic(topic)
            if parts:
                break
            await consumer._client.add_topic(topic)
            await consumer._client.force_metadata_update()
            await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(parts or ())]
        if not tps:
            return records
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batch = await consumer.getmany(timeout_ms=1000, max_records=5000)
            for tp, recs in batch.items():
                records.extend(recs)
                if recs and recs[-1].offset + 1 >= ends[tp]:
                    remaining.discard(tp)
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    finally:
        await consumer.stop()
    return records


def headers_of(record: Any) -> dict[str, str]:
    return {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)) for k, v in record.headers or ()}


async def check_log(stack: ServiceStack, guids: set[str]) -> Verdict:
    """Inputs = published + dead-lettered: every draft record of these stories has an article event (or a dead
    letter), or was superseded by a higher version of its story. Extra events for one record are duplicated
    processing: counted, not failed (idempotent consumers make them harmless)."""
    verdict = Verdict()
    drafts = [r for r in await read_topic(stack.kafka, stack.topic("newsroom.drafts"))
              if r.key and r.key.decode("utf-8", "replace") in guids]
    events = await read_topic(stack.kafka, stack.topic("broadsheet.articles"))
    letters = await read_topic(stack.kafka, stack.topic("broadsheet.deadletter.ingest"))
    by_source: Counter[tuple[int, int]] = Counter()
    top_version: dict[str, int] = {}
    for record in events:
        headers = headers_of(record)
        with contextlib.suppress(KeyError, ValueError):
            by_source[(int(headers["draft-partition"]), int(headers["draft-offset"]))] += 1
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            value = json.loads(record.value)
            guid = str(value.get("guid"))
            top_version[guid] = max(top_version.get(guid, 0), int(value.get("version", 0)))
    dead = set()
    for record in letters:
        headers = headers_of(record)
        with contextlib.suppress(KeyError, ValueError):
            dead.add((int(headers["dlq-source-partition"]), int(headers["dlq-source-offset"])))
    superseded = 0
    for record in drafts:
        source = (record.partition, record.offset)
        if by_source[source] or source in dead:
            continue
        guid = record.key.decode()
        version = int(json.loads(record.value).get("version", 0))
        if top_version.get(guid, 0) >= version:
            superseded += 1
            continue
        verdict.lost.append(f"draft {guid} v{version} at {source} has no article event and no dead letter")
    drafts_sources = {(r.partition, r.offset) for r in drafts}
    verdict.notes["draft_records"] = len(drafts)
    verdict.notes["superseded_or_duplicate_drafts"] = superseded
    verdict.notes["dead_lettered"] = len(drafts_sources & dead)
    verdict.notes["duplicated_processing"] = sum(n - 1 for s, n in by_source.items() if n > 1 and s in drafts_sources)
    return verdict


async def consumer_lag(stack: ServiceStack) -> dict[str, int]:
    from shared.cli import consumer_lag as lag_of
    from shared.settings import ServiceSettings

    settings = ServiceSettings(kafka_bootstrap_servers=stack.kafka, kafka_topic_prefix=stack.prefix)
    return {g.service: g.total for g in await lag_of(settings, CONSUMING)}


async def wait_lag_zero(stack: ServiceStack, within: float = 120) -> float:
    started = time.monotonic()
    last: dict[str, int] | str = {}
    while time.monotonic() - started < within:
        try:
            last = await consumer_lag(stack)
            if not any(last.values()):
                return time.monotonic() - started
        except Exception as exc:
            last = repr(exc)
        await asyncio.sleep(1)
    stuck = [service for service, lag in last.items() if lag] if isinstance(last, dict) else []
    where = await asyncio.to_thread(stack.dump_stacks, stuck)  # which await each stuck consumer is in
    raise AssertionError(f"consumer lag not back to 0 after {within}s: {last}\n{where}")


async def eventually(check: Callable[[], Awaitable[Verdict]], within: float, interval: float = 2.0) -> Verdict:
    deadline = time.monotonic() + within
    verdict = await check()
    while not verdict.ok and time.monotonic() < deadline:
        await asyncio.sleep(interval)
        verdict = await check()
    return verdict


async def canary(stack: ServiceStack, workload: Workload, tag: str, within: float = 120) -> float:
    """Produce a fresh draft at the moment of the fault and return the seconds until its page shows it: how
    long new stories could not get through."""
    started = time.monotonic()
    source = corpus()[0]
    guid = f"{workload.stories[0].guid.rsplit('-', 1)[0]}-canary-{tag}"
    draft = make_draft(guid, headline=f"{source.title} canary", section=(source.section, source.section.title()),
                       published=source.published)
    story = Story(guid, "normal", "", [draft])
    workload.stories.append(story)
    await workload.send_draft(draft)
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() - started < within:
            for port in workload.publisher_ports:
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://127.0.0.1:{port}/a/{guid}")
                    if response.status_code == 301:
                        return time.monotonic() - started
            await asyncio.sleep(0.25)
    return float("inf")
