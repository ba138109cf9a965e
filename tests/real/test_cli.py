"""The operator CLI against the running services: topics, status, and a dead letter fixed and re-driven once."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

from aiokafka import AIOKafkaProducer, TopicPartition

from shared import topics
from shared.cli import _partitions, reader
from shared.settings import ServiceSettings
from tests.support.drafts import make_draft, wait_for_version
from tests.support.stack import REPO, ServiceStack


async def cli(stack: ServiceStack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**stack.env("ingest"), "COLUMNS": "200"}
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    if check:
        assert result.returncode == 0, f"broadsheet {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


async def cli_json(stack: ServiceStack, *args: str) -> Any:
    return json.loads((await cli(stack, *args, "--json")).stdout)


async def redriven_copies(stack: ServiceStack, origin: str) -> int:
    """Records in the drafts topic that came from the dead letter `origin` (`<topic>:<partition>:<offset>`)."""
    settings = ServiceSettings(kafka_bootstrap_servers=stack.kafka, kafka_topic_prefix=stack.prefix)
    topic = stack.topic(topics.DRAFTS)
    found = 0
    async with reader(settings) as consumer:
        tps = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        remaining = {tp for tp in tps if ends[tp] > 0}
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000)
            for records in batches.values():
                for record in records:
                    headers = dict(record.headers or ())
                    if headers.get("redriven-from") == origin.encode():
                        found += 1
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
    return found


async def mis_keyed_dead_letter(stack: ServiceStack, name: str) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """A draft produced under a key that is not its guid, and its dead letter as `dlq list` shows it."""
    draft = make_draft(f"{name}-{uuid.uuid4().hex[:10]}")
    wrong_key = f"wrong-{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topic(topics.DRAFTS), json.dumps(draft).encode(), key=wrong_key.encode(),
            headers=[("trace-id", b"cli-test")],
        )
    finally:
        await producer.stop()

    async def dead_letter() -> dict[str, Any] | None:
        rows = await cli_json(stack, "dlq", "list", "--service", "ingest", "--reason", "key_mismatch")
        return next((r for r in rows if r["key"] == wrong_key), None)

    letter = await stack.wait_for(dead_letter, timeout=30, interval=0.5)
    assert letter, "the mis-keyed draft never reached the ingest dead-letter topic"
    return draft, wrong_key, letter


async def test_topics_describe_reports_every_topic(stack: ServiceStack) -> None:
    described = await cli_json(stack, "topics", "describe")
    by_name = {t["name"]: t for t in described}
    for spec in topics.TOPICS:
        info = by_name[stack.topic(spec.name)]
        assert info["exists"], info
        assert info["partitions"] == 12
        assert info["drift"] == {}, info
    assert by_name[stack.topic(topics.RELATED)]["configs"]["cleanup.policy"] == "compact"


async def test_dead_letter_fixed_and_redriven_once(stack: ServiceStack) -> None:
    draft, wrong_key, letter = await mis_keyed_dead_letter(stack, "cli")
    assert letter["reason_code"] == "key_mismatch"
    assert letter["source_topic"] == stack.topic(topics.DRAFTS)
    assert letter["consumer"] == f"{stack.prefix}broadsheet-ingest"
    ref = f"{letter['partition']}:{letter['offset']}"

    shown = (await cli(stack, "dlq", "show", "ingest", ref)).stdout
    assert "header dlq-reason-code: key_mismatch" in shown
    assert "header trace-id: cli-test" in shown
    assert json.dumps(draft) in shown, "show prints the original bytes"

    # Not yet fixed: the page does not exist.
    status, _, _ = await page_status(stack, draft["guid"])
    assert status == 404

    planned = await cli_json(stack, "dlq", "redrive", "ingest", "--offset", ref, "--set-key-from-guid", "--dry-run")
    assert [p["key"] for p in planned["planned"]] == [draft["guid"]]
    assert planned["redriven"] == []

    done = await cli_json(stack, "dlq", "redrive", "ingest", "--offset", ref, "--set-key-from-guid")
    assert len(done["redriven"]) == 1, done
    assert done["redriven"][0]["key"] == draft["guid"]
    assert done["redriven"][0]["to"].startswith(stack.topic(topics.DRAFTS) + ":")
    await wait_for_version(stack, draft["guid"], 1, timeout=30)

    # Running it again, for this record or for its whole reason, re-drives nothing.
    again = await cli_json(stack, "dlq", "redrive", "ingest", "--offset", ref, "--set-key-from-guid")
    assert again["redriven"] == []
    by_reason = await cli_json(stack, "dlq", "redrive", "ingest", "--reason", "key_mismatch", "--dry-run")
    assert ref not in [p["from"] for p in by_reason["planned"]]
    origin = f"{stack.topic(topics.dead_letter_topic('ingest'))}:{ref}"
    assert await redriven_copies(stack, origin) == 1

    listed = await cli_json(stack, "dlq", "list", "--service", "ingest", "--redriven")
    mine = next(r for r in listed if r["key"] == wrong_key)
    assert mine["redriven_to"] == done["redriven"][0]["to"]
    waiting = await cli_json(stack, "dlq", "list", "--service", "ingest")
    assert wrong_key not in [r["key"] for r in waiting]


async def test_status_reports_lag_dead_letters_and_freshness(stack: ServiceStack) -> None:
    draft = make_draft(f"status-{uuid.uuid4().hex[:10]}")
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(
            stack.topic(topics.DRAFTS), json.dumps(draft).encode(), key=draft["guid"].encode()
        )
    finally:
        await producer.stop()
    await wait_for_version(stack, draft["guid"], 1, timeout=30)

    async def settled() -> dict[str, Any] | None:
        report = await cli_json(stack, "status", "--metrics-url", stack.url("publisher", "/metrics"))
        ingest = report["groups"][f"{stack.prefix}broadsheet-ingest"]
        return report if ingest["total"] == 0 else None

    report = await stack.wait_for(settled, timeout=30, interval=1)
    assert report, "ingest lag did not return to 0"
    groups = report["groups"]
    assert set(groups) == {f"{stack.prefix}broadsheet-{s}" for s in topics.SERVICES}
    assert stack.topic(topics.DRAFTS) in groups[f"{stack.prefix}broadsheet-ingest"]["topics"]
    assert set(report["dead_letters"]) == set(topics.SERVICES)
    assert report["freshness_seconds"] is not None
    assert 0 <= report["freshness_seconds"]["p50"] <= report["freshness_seconds"]["p99"]

    table = (await cli(stack, "status", "--metrics-url", stack.url("publisher", "/metrics"))).stdout
    assert "Consumer lag" in table and "Dead letters" in table and "freshness" in table


async def page_status(stack: ServiceStack, guid: str) -> tuple[int, str, str]:
    from tests.support.drafts import page_of

    return await page_of(stack, guid)


async def test_two_redrives_at_once_send_the_letter_once(stack: ServiceStack) -> None:
    """The second re-drive's producer fences the first and reads the markers after it: never two copies."""
    _, _, letter = await mis_keyed_dead_letter(stack, "cli-twice")
    ref = f"{letter['partition']}:{letter['offset']}"
    runs = await asyncio.gather(*(
        cli(stack, "dlq", "redrive", "ingest", "--offset", ref, "--set-key-from-guid", check=False) for _ in range(3)
    ))
    for result in runs:
        assert result.returncode in (0, 1), result.stderr
        assert "Traceback" not in result.stderr + result.stdout, result.stderr[-3000:]
    origin = f"{stack.topic(topics.dead_letter_topic('ingest'))}:{ref}"
    assert await redriven_copies(stack, origin) == 1


async def test_operator_mistakes_get_one_line_and_an_exit_code(stack: ServiceStack, tmp_path: Any) -> None:
    # A folder with a good draft, a broken file and a draft without a guid: the good one is posted, the others
    # are named and skipped, and the exit code says something was not posted.
    good = make_draft(f"cli-folder-{uuid.uuid4().hex[:10]}")
    (tmp_path / "good.json").write_text(json.dumps(good))
    (tmp_path / "broken.json").write_text('{"guid": "x", ')
    (tmp_path / "no-guid.json").write_text(json.dumps({k: v for k, v in good.items() if k != "guid"}))
    posted = await cli(stack, "drafts", "post", str(tmp_path), check=False)
    assert posted.returncode == 1
    said = posted.stdout + posted.stderr
    assert "posted 1 drafts, skipped 2" in said
    assert "broken.json" in said and "no-guid.json" in said
    await wait_for_version(stack, good["guid"], 1, timeout=30)

    missing = await cli(stack, "drafts", "post", str(tmp_path / "nope.json"), check=False)
    assert missing.returncode == 1 and "does not exist" in missing.stdout + missing.stderr

    bad_ref = await cli(stack, "dlq", "show", "ingest", "abc", check=False)
    assert bad_ref.returncode == 2 and "partition:offset" in bad_ref.stderr + bad_ref.stdout

    # Topics Kafka refuses to create are not reported as created.
    env_prefix = f"cli-refused-{uuid.uuid4().hex[:6]}."
    refused = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", "topics", "create", "--partitions", "-5"],
        cwd=REPO, env={**stack.env("ingest"), "KAFKA_TOPIC_PREFIX": env_prefix, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert refused.returncode == 1 and "refused" in refused.stderr and "created" not in refused.stderr

    # A prefix whose topics do not exist is said so, not reported as an empty dead-letter topic.
    nowhere = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", "dlq", "list", "--service", "ingest"],
        cwd=REPO, env={**stack.env("ingest"), "KAFKA_TOPIC_PREFIX": env_prefix, "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert nowhere.returncode == 1 and "does not exist" in nowhere.stderr

    unreachable = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", "dlq", "list", "--service", "ingest"],
        cwd=REPO, env={**stack.env("ingest"), "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert unreachable.returncode == 1 and "not reachable" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


async def test_site_rebuild_of_an_empty_log_and_its_one_line_errors(stack: ServiceStack) -> None:
    """More workers than partitions holding records (here none) rebuild the empty site; an unreachable Redis is one
    line and exit 1, as for every other command."""
    prefix = f"cli-empty-{uuid.uuid4().hex[:6]}."
    await topics.ensure_topics(stack.kafka, prefix=prefix, partitions=3)
    env = {**stack.env("publisher"), "KAFKA_TOPIC_PREFIX": prefix, "REDIS_NAMESPACE": prefix.rstrip("."),
           "REBUILD_WORKERS": "4", "COLUMNS": "200"}
    empty = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", "site", "rebuild", "--dry-run"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )
    assert empty.returncode == 0, empty.stderr[-2000:]
    assert "0 records replayed" in empty.stderr

    no_redis = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "shared.cli", "site", "rebuild", "--dry-run"],
        cwd=REPO, env={**env, "REDIS_URL": "redis://127.0.0.1:9/0"},
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert no_redis.returncode == 1 and "Redis is not reachable" in no_redis.stderr
    assert "Traceback" not in no_redis.stderr
