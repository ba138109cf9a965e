"""Scaling and restart drills: steady draft load while instances come and go, then check every page.

    .venv/bin/python -m bench.scaling_drill --rate 50 --step-seconds 60 --steps 1,3,2,4,1

starts its own stack (Kafka and Redis must be up: `deploy/local/stack.sh infra`), runs the steps and prints, per
step, the drafts sent, the time for every group's lag to return to 0, and at the end whether every draft reached
its page exactly once. The end-to-end tests (tests/e2e/test_scaling_drill.py, test_rolling_restart.py) run a
short version of the same drill.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import re
import signal
import subprocess
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from shared.cli import consumer_lag
from shared.settings import ServiceSettings
from tests.support.drafts import make_draft
from tests.support.stack import SERVICES, ServiceStack, free_port
from tests.support.topics import TOPICS

CONSUMING = ("ingest", "related", "comments", "publisher")
SUMMARY = re.compile(r'<article class="summary" data-guid="([^"]+)"')
NEXT = re.compile(r'<link rel="next" href="([^"]+)"')
VERSION = re.compile(r'<meta name="broadsheet:version" content="(\d+)">')


def story_text(n: int) -> str:
    """Sentences on one of a few topics, different for every draft: a newsroom's steady flow, not one story filed
    thousands of times (which would measure the related engine's handling of copies instead of scaling)."""
    rng = random.Random(n)
    words = TOPICS[list(TOPICS)[n % len(TOPICS)]]
    return ". ".join(" ".join(rng.sample(words, 12)).capitalize() for _ in range(6)) + "."


@dataclass
class Load:
    """Drafts at a steady rate, one new guid each, all in the drill's own section."""

    stack: ServiceStack
    rate: float
    section: str
    sent: list[str] = field(default_factory=list)
    running: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.stack.kafka, acks="all", enable_idempotence=True)
        await self._producer.start()
        self.running.set()
        self._task = asyncio.create_task(self._run())

    async def pause(self) -> None:
        """Stop sending (and flush) so that lag can be seen to reach 0; `resume` picks up the same rate."""
        self.running.clear()
        if self._producer is not None:
            await self._producer.flush()

    def resume(self) -> None:
        self.running.set()

    async def _run(self) -> None:
        assert self._producer is not None
        topic = self.stack.topic("newsroom.drafts")
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while True:
            if not self.running.is_set():
                await self.running.wait()
                next_at = time.monotonic()
            guid = f"{self.section}-{len(self.sent):05d}"
            draft = make_draft(guid, section=(self.section, f"Drill {self.section}"), body=story_text(len(self.sent)),
                               published=datetime.now(UTC))
            await self._producer.send(topic, json.dumps(draft).encode(), key=guid.encode())
            self.sent.append(guid)
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._producer is not None:
            await self._producer.flush()
            await self._producer.stop()


@dataclass
class Drill:
    stack: ServiceStack
    log: list[str] = field(default_factory=list)

    def say(self, text: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {text}"
        self.log.append(line)
        print(line, flush=True)

    @property
    def settings(self) -> ServiceSettings:
        return ServiceSettings(kafka_bootstrap_servers=self.stack.kafka, kafka_topic_prefix=self.stack.prefix)

    def instances(self, service: str) -> list[subprocess.Popen[bytes]]:
        return self.stack.processes.setdefault(service, [])

    async def scale(self, service: str, count: int) -> None:
        """Start or stop (SIGTERM, newest first) instances until `count` run; extra ones get their own port.

        The instances a scale-up adds start together, as an orchestrator starts the replicas it is asked for: their
        group sees them join in one rebalance or a few close together, not one after the other's start-up."""
        procs = self.instances(service)
        added: list[int] = []
        while len(procs) < count:
            instance = len(procs)
            self.stack.ports[f"{service}-{instance}"] = free_port()
            self.stack.start(service, instance)
            added.append(instance)
        await asyncio.gather(*(self.wait_ready(service, instance) for instance in added))
        while len(procs) > count:
            proc = procs.pop()
            proc.send_signal(signal.SIGTERM)
            await asyncio.to_thread(proc.wait, 40)

    def port(self, service: str, instance: int) -> int:
        return self.stack.ports[service] if instance == 0 else self.stack.ports[f"{service}-{instance}"]

    async def wait_ready(self, service: str, instance: int, within: float = 120) -> None:
        url = f"http://127.0.0.1:{self.port(service, instance)}/readyz"
        deadline = time.monotonic() + within
        proc = self.instances(service)[instance]
        async with httpx.AsyncClient(timeout=2) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(f"{service}-{instance} exited with {proc.returncode}:\n"
                                       f"{self.stack.log(service, instance)[-3000:]}")
                try:
                    if (await client.get(url)).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.3)
        raise TimeoutError(f"{service}-{instance} not ready in {within}s")

    async def wait_lag_zero(self, within: float = 60) -> float:
        """Seconds until every group's lag is 0 (raises with the last reading, per partition, on timeout)."""
        started = time.monotonic()
        groups = await consumer_lag(self.settings, CONSUMING)
        while time.monotonic() - started < within:
            groups = await consumer_lag(self.settings, CONSUMING)
            if not any(g.total for g in groups):
                return time.monotonic() - started
            await asyncio.sleep(1)
        behind = {
            g.service: {f"{t}[{p}]": lag for t, parts in g.partitions.items() for p, lag in parts.items() if lag}
            for g in groups
            if g.total
        }
        raise AssertionError(f"consumer lag not back to 0 after {within}s: {behind}")

    async def restart(self, service: str, *, grace: float = 25) -> tuple[int, float]:
        """SIGTERM every instance of `service` in turn and start it again; returns (worst exit code, slowest)."""
        worst, slowest = 0, 0.0
        for instance in range(len(self.instances(service))):
            proc = self.instances(service)[instance]
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.to_thread(proc.wait, grace + 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = await asyncio.to_thread(proc.wait)
                code = code if code else -9
            elapsed = time.monotonic() - started
            self.say(f"{service}-{instance} exited with {code} after {elapsed:.1f}s")
            worst = code if code != 0 else worst
            slowest = max(slowest, elapsed)
            self.instances(service).pop(instance)
            replacement = self._spawn(service, instance)
            self.instances(service).insert(instance, replacement)
            await self.wait_ready(service, instance)
        return worst, slowest

    def _spawn(self, service: str, instance: int) -> subprocess.Popen[bytes]:
        proc = self.stack.start(service, instance)
        self.instances(service).remove(proc)
        return proc


async def pages(stack: ServiceStack, guids: list[str], *, version: int = 1, concurrency: int = 16) -> list[str]:
    """The guids whose page is missing or shows another version."""
    missing: list[str] = []
    semaphore = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:

        async def check(guid: str) -> None:
            async with semaphore:
                first = await client.get(f"/a/{guid}")
                if first.status_code != 301:
                    missing.append(guid)
                    return
                page = await client.get(first.headers["location"])
                found = VERSION.search(page.text)
                if page.status_code != 200 or not found or int(found.group(1)) != version:
                    missing.append(guid)

        await asyncio.gather(*(check(g) for g in guids))
    return sorted(missing)


async def section_listing(stack: ServiceStack, section: str) -> list[list[str]]:
    """The guids listed on each of the section's pages, following rel=next. The front page (newest first) and
    the stable archive pages behind it may overlap by design; one page never lists a story twice."""
    listed: list[list[str]] = []
    path: str | None = f"/section/{section}"
    seen: set[str] = set()
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:
        while path and path not in seen:
            seen.add(path)
            response = await client.get(path)
            if response.status_code != 200:
                break
            listed.append(SUMMARY.findall(response.text))
            found = NEXT.search(response.text)
            path = found.group(1) if found else None
    return listed


async def verify(stack: ServiceStack, sent: list[str], section: str) -> dict[str, Any]:
    missing = await pages(stack, sent)
    pages_listed = await section_listing(stack, section)
    duplicates = sorted({g for page in pages_listed for g, n in Counter(page).items() if n > 1})
    listed = {g for page in pages_listed for g in page}
    return {"sent": len(sent), "missing": missing, "listed": len(listed), "duplicates": duplicates,
            "unlisted": sorted(set(sent) - listed), "unexpected": sorted(listed - set(sent))}


async def run_drill(
    stack: ServiceStack, *, rate: float, step_seconds: float, steps: list[int], lag_timeout: float = 60
) -> dict[str, Any]:
    drill = Drill(stack)
    section = f"drill{uuid.uuid4().hex[:6]}"
    load = Load(stack, rate, section)
    report: dict[str, Any] = {"section": section, "steps": []}
    await load.start()
    try:
        for count in steps:
            began = time.monotonic()
            before = len(load.sent)
            load.resume()
            await asyncio.gather(*(drill.scale(s, count) for s in CONSUMING))
            drill.say(f"{count} instance(s) of each service running (scaled in {time.monotonic() - began:.1f}s)")
            await asyncio.sleep(max(0.0, step_seconds - (time.monotonic() - began)))
            await load.pause()
            drained = await drill.wait_lag_zero(lag_timeout)
            report["steps"].append({"instances": count, "drafts": len(load.sent) - before,
                                    "lag_zero_after_s": round(drained, 1)})
            drill.say(f"step {count}: {len(load.sent) - before} drafts, lag back to 0 in {drained:.1f}s")
    finally:
        await load.stop()
        await asyncio.gather(*(drill.scale(s, 1) for s in CONSUMING), return_exceptions=True)
    report["drain_s"] = round(await drill.wait_lag_zero(lag_timeout), 1)
    report.update(await verify(stack, load.sent, section))
    return report


async def run_restarts(stack: ServiceStack, *, rate: float, settle_seconds: float = 4) -> dict[str, Any]:
    drill = Drill(stack)
    section = f"restart{uuid.uuid4().hex[:6]}"
    load = Load(stack, rate, section)
    report: dict[str, Any] = {"section": section, "restarts": {}}
    await load.start()
    try:
        await asyncio.sleep(settle_seconds)
        for service in SERVICES:
            code, seconds = await drill.restart(service)
            report["restarts"][service] = {"exit_code": code, "seconds": round(seconds, 1)}
            await asyncio.sleep(settle_seconds)
    finally:
        await load.stop()
    report["drain_s"] = round(await drill.wait_lag_zero(90), 1)
    report.update(await verify(stack, load.sent, section))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=50.0, help="drafts per second")
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument("--steps", default="1,3,2,4,1", help="instances of each service, per step")
    parser.add_argument("--restarts", action="store_true", help="run the rolling-restart drill instead")
    parser.add_argument("--kafka", default="127.0.0.1:9092")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    run_id = uuid.uuid4().hex[:8]
    stack = ServiceStack(
        kafka=args.kafka, redis=args.redis, prefix=f"drill{run_id}.", namespace=f"drill{run_id}",
        ports={name: free_port() for name in SERVICES}, log_dir=Path(tempfile.mkdtemp(prefix="drill-logs-")),
    )
    asyncio.run(stack.create_topics())
    stack.start_all()
    try:
        stack.wait_ready(timeout=90)
        if args.restarts:
            report = asyncio.run(run_restarts(stack, rate=args.rate))
        else:
            steps = [int(s) for s in args.steps.split(",")]
            report = asyncio.run(run_drill(stack, rate=args.rate, step_seconds=args.step_seconds, steps=steps,
                                           lag_timeout=120))
        print(json.dumps({**report, "missing": report["missing"][:20], "unlisted": report["unlisted"][:20]},
                         indent=2))
        print(f"service logs: {stack.log_dir}")
    finally:
        stack.stop_all()
        asyncio.run(stack.delete_topics())
        asyncio.run(stack.delete_keys())


if __name__ == "__main__":
    main()
