"""How fast one comments process moderates a spam wave, and how soon an approved comment reaches its page.

    .venv/bin/python bench/comments_bench.py                    # 20,000 comments, 50 approvals
    .venv/bin/python bench/comments_bench.py --comments 50000 --approvals 100

Needs the local Kafka and Redis (`deploy/local/stack.sh infra`) and the YouTube spam collection in
`../shared/data/youtube-spam/*.csv`. Everything runs in a private topic prefix and Redis namespace, removed when
the round ends.

1. Throughput. The YouTube comments are replayed, as fast as a producer can write them, as `CommentSubmitted` events
   on one live article (each comment with its own id, author address and IP, as from a botnet; past the corpus's
   1,138 comments each replay appends its number to the texts, so no text comes back); they are written while the
   comments process is stopped, then the process is started on that backlog. Rate = decisions / (last decision's
   timestamp - first decision's timestamp), read from the decisions topic, so start-up is not counted. The baseline
   is a bare aiokafka consumer that reads the same backlog and produces one record of the same size per record read
   (batched, acks=all, committed per batch), in the same run, on the same machine, twice: the faster copy counts. A
   bare copy runs in one of two modes (near 28,000 or near 48,000 records/s here; a mode often holds for minutes,
   while the comments process's CPU per decision moves by a tenth), and the ceiling is the faster. Both sides run
   with nothing else busy: the publisher serves the latency part (2.) first and is stopped for the wave. The bare
   rate also swings between runs on a shared machine, so the wave and its baseline are repeated (`--rounds`, each on
   fresh topics) and the median round's share is the result. Each round also prints the CPU each side spent per
   record: the comments process's between the polls that saw 10 % and 90 % of the decisions (from /proc), the bare
   loop's in this process (the lower of its two copies), where nothing else runs meanwhile. The bare loop waits on
   the broker between batches (fetch, acks, commit), so its rate swings with the broker's latency; its CPU per record
   moves far less, and the CPU ratio is what the share would be if both sides were bound by their own CPU alone.
2. Latency (measured before the wave, on the same stack). On another article, comments held for a first-time
   author are approved one at a time through the
   moderation API; the time from the API call to the first page fetch that shows `id="comment-{id}"` (polled
   every 5 ms through the publisher's HTTP port) is one sample. Sampling starts once the consumer groups
   have settled after start-up (`SETTLE_SECONDS`).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.progress import cpu_per_record, partitions_of, wait_for_records  # noqa: E402
from shared import topics  # noqa: E402
from shared.contracts.articles import ArticlePublished, Author, Term  # noqa: E402
from shared.contracts.comments import CommentSubmitted  # noqa: E402
from tests.support.stack import MODERATION_TOKEN, ServiceStack, free_port  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "youtube-spam"
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
RAW_TOPIC = "bench.raw-copy"
TARGET_RATE = 2000.0
TARGET_SHARE = 0.25
SETTLE_SECONDS = 5.0
BARE_COPIES = 2


def load_corpus() -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    for path in sorted(DATA.glob("*.csv")):
        with path.open(encoding="utf-8", newline="") as handle:
            rows.extend((row["AUTHOR"], row["CONTENT"]) for row in csv.DictReader(handle))
    if not rows:
        raise SystemExit(f"no comments found in {DATA}")
    return rows


def article_event(guid: str, headline: str) -> ArticlePublished:
    now = datetime.now(UTC) - timedelta(hours=1)
    slug = guid.lower()
    return ArticlePublished(
        guid=guid,
        version=1,
        url_path=f"/world/{now:%Y/%m/%d}/{slug}",
        slug=slug,
        headline=headline,
        excerpt="A story that draws a crowd.",
        body_html="<p>A story that draws a crowd.</p>",
        section=Term(code="world", name="World"),
        authors=[Author(name="Jane Doe", slug="jane-doe")],
        date_published=now,
        date_modified=now,
        story_root=guid,
    )


async def produce_all(producer: AIOKafkaProducer, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    futures = [await producer.send(topic, value, key=key) for key, value in items]
    await asyncio.gather(*futures)


async def read_all(topic: str, expected: int, within: float) -> list[Any]:
    consumer = AIOKafkaConsumer(bootstrap_servers=KAFKA, enable_auto_commit=False, fetch_max_bytes=64 << 20)
    await consumer.start()
    try:
        await consumer._client.add_topic(topic)
        parts = await partitions_of(consumer, topic)
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        records: list[Any] = []
        deadline = time.monotonic() + within
        while len(records) < expected and time.monotonic() < deadline:
            for batch in (await consumer.getmany(timeout_ms=500, max_records=10_000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def raw_copy(source: str, target: str, expected: int) -> float:
    """Records per second of a bare consume + produce of the backlog (the ceiling for any consumer in Python)."""
    consumer = AIOKafkaConsumer(
        source, bootstrap_servers=KAFKA, group_id=f"bench-raw-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest", enable_auto_commit=False, max_poll_records=500,
        fetch_max_bytes=64 << 20,
    )
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=2)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        first: float | None = None
        while done < expected:
            batches = await consumer.getmany(timeout_ms=1000, max_records=500)
            if not batches:
                continue
            first = first or time.perf_counter()
            futures = []
            for records in batches.values():
                for record in records:
                    futures.append(await producer.send(target, record.value, key=record.key))
            await asyncio.gather(*futures)
            await consumer.commit()
            done += len(futures)
        return expected / (time.perf_counter() - (first or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()


async def wait_until(check: Any, within: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(interval)
    raise TimeoutError("condition not met in time")


async def throughput(stack: ServiceStack, producer: AIOKafkaProducer, count: int) -> dict[str, float]:
    corpus = load_corpus()
    guid = f"bench-wave-{uuid.uuid4().hex[:8]}"
    event = article_event(guid, "A story that draws a spam wave")
    await producer.send_and_wait(stack.topic(topics.ARTICLES), event.model_dump_json().encode(), key=guid.encode())
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
    async with httpx.AsyncClient(base_url=stack.url("comments"), headers=headers) as client:
        async def known() -> bool:
            return (await client.get(f"/moderation/articles/{guid}")).status_code == 200

        await wait_until(known, 30)
    stack.stop("comments")

    now = datetime.now(UTC)
    items: list[tuple[bytes, bytes]] = []
    for n in range(count):
        author, content = corpus[n % len(corpus)]
        copy = n // len(corpus)
        submission = CommentSubmitted(
            id=f"w{n:07d}-{uuid.uuid4().hex[:6]}",
            article_guid=guid,
            author=author[:100] or "anonymous",
            email=f"wave{n}.{copy}@example.org",
            # Each replay of the corpus is a wave of its own texts: the text caches (a batch's worth) must
            # not turn the later copies into cache hits that a real wave of fresh texts would not get.
            body=content if copy == 0 else f"{content} #{copy}",
            ip=f"10.{n // 62500 % 250}.{n // 250 % 250}.{n % 250}",
            submitted_at=now + timedelta(milliseconds=n),
        )
        items.append((guid.encode(), submission.model_dump_json().encode()))
    started = time.perf_counter()
    await produce_all(producer, stack.topic(topics.COMMENT_SUBMISSIONS), items)
    produced_in = time.perf_counter() - started

    process = stack.start("comments")
    progress = await wait_for_records(stack.topic(topics.COMMENT_DECISIONS), count, within=900, pid=process.pid)
    records = await read_all(stack.topic(topics.COMMENT_DECISIONS), count, within=600)
    mine = [r for r in records if r.key == guid.encode()]
    stamps = sorted(r.timestamp for r in mine)
    statuses: dict[str, int] = {}
    for r in mine:
        status = json.loads(r.value)["status"]
        statuses[status] = statuses.get(status, 0) + 1
    elapsed = (stamps[-1] - stamps[0]) / 1000 if len(stamps) > 1 else float("nan")
    rate = (len(mine) - 1) / elapsed if elapsed > 0 else float("nan")

    await asyncio.to_thread(stack.wait_ready, 60, ("comments",))
    # Two bare copies, the faster one the ceiling: a copy's rate has two modes here (see the module's docstring).
    raw_rates: list[float] = []
    raw_cpus: list[float] = []
    for _ in range(BARE_COPIES):
        raw_cpu_before = time.process_time()  # nothing else runs in this process meanwhile
        raw_rates.append(await raw_copy(stack.topic(topics.COMMENT_SUBMISSIONS), stack.topic(RAW_TOPIC), count))
        raw_cpus.append((time.process_time() - raw_cpu_before) / count)
    raw = max(raw_rates)
    raw_cpu = min(raw_cpus)
    return {
        "cpu_ms": cpu_per_record(progress, count) * 1000,
        "raw_cpu_ms": raw_cpu * 1000,
        "decisions": float(len(mine)),
        "seconds": elapsed,
        "rate": rate,
        "raw_rate": raw,
        "raw_slower": min(raw_rates),
        "produce_rate": count / produced_in,
        **{f"status_{k}": float(v) for k, v in sorted(statuses.items())},
    }


async def latency(stack: ServiceStack, producer: AIOKafkaProducer, approvals: int) -> list[float]:
    guid = f"bench-latency-{uuid.uuid4().hex[:8]}"
    event = article_event(guid, "A story readers approve of")
    await producer.send_and_wait(stack.topic(topics.ARTICLES), event.model_dump_json().encode(), key=guid.encode())
    headers = {"Authorization": f"Bearer {MODERATION_TOKEN}"}
    samples: list[float] = []
    async with (
        httpx.AsyncClient(base_url=stack.url("comments"), headers=headers) as moderation,
        httpx.AsyncClient(base_url=stack.url("publisher")) as reader,
    ):
        async def page_ready() -> bool:
            return (await reader.get(event.url_path)).status_code == 200

        await wait_until(page_ready, 30)
        # Right after start-up the consumers join their groups one by one, and each join pauses the group for
        # a rebalance (the first approval of a fresh stack waited up to 2.9 s for it): measure steady operation.
        await asyncio.sleep(SETTLE_SECONDS)
        for n in range(approvals):
            submission = CommentSubmitted(
                id=f"lat{n:04d}-{uuid.uuid4().hex[:6]}",
                article_guid=guid,
                author=f"Reader {n}",
                email=f"reader{n}.{uuid.uuid4().hex[:6]}@example.org",
                body=f"Reader {n} thinks this is a fair summary of the talks.",
                ip=f"203.0.113.{n % 250}",
                submitted_at=datetime.now(UTC),
            )
            await producer.send_and_wait(
                stack.topic(topics.COMMENT_SUBMISSIONS), submission.model_dump_json().encode(), key=guid.encode()
            )

            async def held(comment_id: str = submission.id) -> bool:
                response = await moderation.get(f"/moderation/comments/{comment_id}")
                return response.status_code == 200 and response.json()["status"] == "pending"

            await wait_until(held, 30, 0.01)
            marker = f'id="comment-{submission.id}"'
            started = time.perf_counter()
            answer = await moderation.post(f"/moderation/comments/{submission.id}/approve", json={"moderator": "bench"})
            assert answer.status_code == 202, answer.text

            async def shown(marker: str = marker) -> bool:
                return marker in (await reader.get(event.url_path)).text

            await wait_until(shown, 30, 0.005)
            samples.append(time.perf_counter() - started)
    return samples


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def one_round(comments: int, approvals: int) -> tuple[dict[str, float], list[float]]:
    """One spam wave and its bare baseline on a stack of its own (fresh topics, fresh Redis namespace)."""
    run = uuid.uuid4().hex[:8]
    stack = ServiceStack(
        kafka=KAFKA, redis=REDIS, prefix=f"b{run}.", namespace=f"b{run}",
        ports={name: free_port() for name in ("publisher", "ingest", "comments", "related")},
        log_dir=Path(tempfile.mkdtemp(prefix="comments-bench-")),
    )
    specs = (*topics.TOPICS, topics.TopicSpec(RAW_TOPIC, "bench scratch copy"))
    await topics.ensure_topics(KAFKA, prefix=stack.prefix, partitions=12, specs=specs)
    producer = AIOKafkaProducer(
        bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5, max_batch_size=512 * 1024
    )
    await producer.start()
    try:
        for service in ("comments", "publisher"):
            stack.start(service)
        await asyncio.to_thread(stack.wait_ready, 90, ("comments", "publisher"))
        samples = await latency(stack, producer, approvals) if approvals else []
        # The wave is the comments process's alone, as the bare copy is the bare loop's alone: the publisher
        # rendering 40,000 decisions at once would take half a core of this machine's two from both.
        stack.stop("publisher")
        wave = await throughput(stack, producer, comments)
    finally:
        await producer.stop()
        stack.stop_all()
        await stack.delete_topics()
        await stack.delete_keys()
    return wave, samples


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comments", type=int, default=20_000)
    parser.add_argument("--approvals", type=int, default=50, help="0 skips the latency part")
    parser.add_argument("--rounds", type=int, default=3, help="waves, each on a fresh stack; the median counts")
    args = parser.parse_args()
    if args.comments < 2 or args.approvals < 0 or args.rounds < 1:
        parser.error("--comments must be at least 2, --approvals at least 0, --rounds at least 1")

    waves: list[dict[str, float]] = []
    samples: list[float] = []
    for number in range(1, args.rounds + 1):
        wave, latencies = await one_round(args.comments, args.approvals if number == args.rounds else 0)
        waves.append(wave)
        samples.extend(latencies)
        print(f"round {number}: {wave['rate']:,.0f} decisions/s, bare {wave['raw_rate']:,.0f} records/s "
              f"(other copy {wave['raw_slower']:,.0f}), share {wave['rate'] / wave['raw_rate']:.3f}; "
              f"CPU per record {wave['cpu_ms']:.3f} ms, bare {wave['raw_cpu_ms']:.3f} ms, "
              f"CPU ratio {wave['raw_cpu_ms'] / wave['cpu_ms']:.2f}", flush=True)
    wave = sorted(waves, key=lambda w: w["rate"] / w["raw_rate"])[len(waves) // 2]

    share = wave["rate"] / wave["raw_rate"]
    cpu_ratio = statistics.median(w["raw_cpu_ms"] / w["cpu_ms"] for w in waves)
    rows = [
        (f"spam wave (median of {len(waves)}): comments moderated", f"{int(wave['decisions']):,}", ""),
        ("  by status", ", ".join(f"{k[7:]} {int(v):,}" for k, v in wave.items() if k.startswith("status_")), ""),
        ("  comments process, decisions/s", f"{wave['rate']:,.0f}", f">= {TARGET_RATE:,.0f}"),
        ("  bare aiokafka consume+produce (faster copy), records/s", f"{wave['raw_rate']:,.0f}", ""),
        ("  share of bare", f"{share:.3f}", f">= {TARGET_SHARE:.2f}"),
        ("  CPU per decision / per bare record, ms", f"{wave['cpu_ms']:.3f} / {wave['raw_cpu_ms']:.3f}", ""),
        ("  CPU ratio, median of rounds (not the target)", f"{cpu_ratio:.2f}", ""),
        ("  backlog written at, records/s", f"{wave['produce_rate']:,.0f}", ""),
    ]
    if samples:
        rows += [
            (f"approve -> page, p50 ({len(samples)} approvals)", f"{percentile(samples, 0.5) * 1000:,.0f} ms", ""),
            ("approve -> page, p99", f"{percentile(samples, 0.99) * 1000:,.0f} ms", "<= 1,000 ms"),
            ("approve -> page, mean", f"{statistics.fmean(samples) * 1000:,.0f} ms", ""),
        ]
    else:
        rows.append(("approve -> page", "not measured", "(--approvals 0)"))
    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'value':>14}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>14}  {target}")
    ok = wave["rate"] >= TARGET_RATE and share >= TARGET_SHARE and (not samples or percentile(samples, 0.99) <= 1.0)
    print(("PASS" if ok else "BELOW TARGET") + ("" if samples else " (throughput only)"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
