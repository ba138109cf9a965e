"""Start and stop the services as real processes for end-to-end tests, and talk to them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

import httpx
import redis.asyncio as aioredis

from shared import topics
from shared.redis import unlink_matching

REPO = Path(__file__).resolve().parents[2]
T = TypeVar("T")
SERVICES = ("ingest", "related", "comments", "publisher")
INGEST_TOKEN = "test-ingest-token"
MODERATION_TOKEN = "test-moderation-token"
PUSH_KEY = "test-push-key"
FORM_SECRET = "test-form-secret"


def kafka_answers(bootstrap: str) -> bool:
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=2):
            return True
    except OSError:
        return False


def redis_answers(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "127.0.0.1", parsed.port or 6379), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG") or s.recv(16).startswith(b"-NOAUTH")
    except OSError:
        return False


@dataclass
class ServiceStack:
    kafka: str
    redis: str
    prefix: str
    namespace: str
    ports: dict[str, int]
    log_dir: Path
    processes: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    extra_env: dict[str, str] = field(default_factory=dict)

    def topic(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.ports[service]}{path}"

    def env(self, service: str, instance: int = 0) -> dict[str, str]:
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka,
            "REDIS_URL": self.redis,
            "KAFKA_TOPIC_PREFIX": self.prefix,
            "REDIS_NAMESPACE": self.namespace,
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "ENVIRONMENT": "test",
            "INGEST_TOKEN": INGEST_TOKEN,
            "MODERATION_TOKEN": MODERATION_TOKEN,
            "SUPERDESK_PUSH_KEY": PUSH_KEY,
            "COMMENT_FORM_SECRET": FORM_SECRET,
            "SITE_BASE_URL": self.url("publisher"),
            "PUBLISHER_HTTP_PORT": str(self.ports["publisher"]),
            "INGEST_HTTP_PORT": str(self.ports["ingest"]),
            "COMMENTS_HTTP_PORT": str(self.ports["comments"]),
            "RELATED_HTTP_PORT": str(self.ports["related"]),
            **self.extra_env,
        }
        env["INSTANCE_ID"] = f"{service}-{instance}"
        if instance:
            env[f"{service.upper()}_HTTP_PORT"] = str(self.ports.get(f"{service}-{instance}", 0))
        return env

    def settings(self, service: str, cls: type[T]) -> T:
        """The settings object a service process of this stack runs with."""
        env = self.env(service)
        fields = cls.model_fields  # type: ignore[attr-defined]
        return cls.model_validate({k.lower(): v for k, v in env.items() if k.lower() in fields})  # type: ignore[attr-defined,no-any-return]

    async def create_topics(self) -> None:
        await topics.ensure_topics(self.kafka, prefix=self.prefix, partitions=12)

    async def delete_topics(self) -> None:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(self.prefix)]
            if names:
                await admin.delete_topics(names)
        except Exception:  # noqa: S110 - best effort clean-up of a test prefix
            pass
        finally:
            await admin.close()

    async def delete_keys(self) -> int:
        """Remove the stack's Redis namespace: a stack of its own leaves nothing behind (one spam-wave round of the
        comments benchmark left 80,000 keys, about 90 MB). Best effort, like `delete_topics`."""
        client = aioredis.Redis.from_url(self.redis)
        try:
            return await unlink_matching(client, f"{self.namespace}:*")
        except Exception:  # a Redis gone already leaves nothing to clean
            return 0
        finally:
            await client.aclose()

    def start(self, service: str, instance: int = 0) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{service}-{instance}.log", "ab")  # noqa: SIM115 - lives as long as the process
        proc = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            cwd=REPO, env=self.env(service, instance), stdout=log, stderr=subprocess.STDOUT,
        )
        self.processes.setdefault(service, []).append(proc)
        return proc

    def start_all(self) -> None:
        for service in SERVICES:
            self.start(service)

    def wait_ready(self, timeout: float = 60, services: tuple[str, ...] = SERVICES) -> None:
        deadline = time.monotonic() + timeout
        for service in services:
            while True:
                for proc in self.processes.get(service, []):
                    if proc.poll() is not None:
                        raise RuntimeError(f"{service} exited with {proc.returncode}:\n{self.log(service)[-3000:]}")
                try:
                    if httpx.get(self.url(service, "/readyz"), timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{service} not ready in {timeout}s:\n{self.log(service)[-3000:]}")
                time.sleep(0.2)

    def log(self, service: str, instance: int = 0) -> str:
        path = self.log_dir / f"{service}-{instance}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def log_lines(self, service: str, instance: int = 0) -> list[dict[str, Any]]:
        lines = []
        for line in self.log(service, instance).splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines

    def stop(self, service: str, sig: int = signal.SIGTERM, timeout: float = 30) -> list[int]:
        """Signal every instance of `service` and wait for it; returns the exit codes."""
        procs = self.processes.pop(service, [])
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(sig)
        codes = []
        for proc in procs:
            try:
                codes.append(proc.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                proc.kill()
                codes.append(proc.wait())
        return codes

    def stop_all(self) -> None:
        procs = [p for group in self.processes.values() for p in group]
        self.processes.clear()
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def dump_stacks(self, services: Iterable[str]) -> str:
        """Have these services log where each of their tasks waits (SIGUSR1), for a test about to fail on a
        consumer that stopped moving; returns the await chain of each task, for the failure message."""
        chosen = list(services)
        seen = {(s, i): len(self.log_lines(s, i)) for s in chosen for i in range(len(self.processes.get(s, [])))}
        for service in chosen:
            for proc in self.processes.get(service, []):
                if proc.poll() is None:
                    proc.send_signal(signal.SIGUSR1)
        time.sleep(1.5)
        report = []
        for (service, instance), before in seen.items():
            for line in self.log_lines(service, instance)[before:]:  # this dump's lines, not an earlier one's
                if line.get("event") == "task stack":
                    lines = str(line.get("stack", "")).splitlines()
                    frames = [f.strip() for f in lines if f.strip().startswith("File")]
                    report.append(f"{service}-{instance} {line.get('task')}: " + " > ".join(frames))
        # The project's own loops first: a message cut short keeps what says which of them is stuck.
        return "\n".join(sorted(report, key=lambda entry: "/services/" not in entry and "/shared/" not in entry))

    async def wait_idle(self, timeout: float = 60) -> None:
        """Until every consumer group of the stack has consumed everything and the publisher has no list left
        to render (four times in a row, half a second apart)."""
        from aiokafka import AIOKafkaConsumer
        from aiokafka.admin import AIOKafkaAdminClient
        from redis import asyncio as aioredis

        admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
        probe = AIOKafkaConsumer(bootstrap_servers=self.kafka)
        client = aioredis.Redis.from_url(self.redis)
        await admin.start()
        await probe.start()
        try:
            deadline = time.monotonic() + timeout
            quiet = 0
            while quiet < 4:
                lag = 0
                for service in SERVICES:
                    offsets = await admin.list_consumer_group_offsets(f"{self.prefix}broadsheet-{service}")
                    if offsets:
                        ends = await probe.end_offsets(list(offsets))
                        lag += sum(max(0, ends[tp] - meta.offset) for tp, meta in offsets.items())
                # The publisher renders lists, feeds and sitemaps after the batch that changed them.
                lag += len([key async for key in client.scan_iter(
                    match=f"{self.namespace}*:pub:{{render}}:pending", count=1000)])
                quiet = quiet + 1 if lag == 0 else 0
                if time.monotonic() > deadline:
                    raise TimeoutError(f"consumers still {lag} records behind after {timeout}s")
                await asyncio.sleep(0.5)
        finally:
            await probe.stop()
            await admin.close()
            await client.aclose()

    async def wait_for(self, predicate: Any, timeout: float = 10, interval: float = 0.05) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = await predicate()
            if last:
                return last
            await asyncio.sleep(interval)
        return last


async def until(check: Callable[[], Awaitable[T | None]], within: float = 20) -> T:
    """The first truthy answer of `check`, asked every 0.1 s; fails the test past `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"not reached within {within}s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def private_stack(
    kafka: str, redis: str, log_dir: Path, services: tuple[str, ...], *, tag: str,
    extra_env: Mapping[str, str] | None = None,
) -> AsyncIterator[ServiceStack]:
    """Service processes of their own, on topics and a Redis namespace of their own, for a test that changes their
    settings or wipes their state without touching the session's stack; everything is removed afterwards."""
    run = f"{tag}{uuid.uuid4().hex[:8]}"
    stack = ServiceStack(
        kafka=kafka, redis=redis, prefix=f"{run}.", namespace=run,
        ports={name: free_port() for name in SERVICES}, log_dir=log_dir, extra_env=dict(extra_env or {}),
    )
    await stack.create_topics()
    for service in services:
        stack.start(service)
    try:
        await asyncio.to_thread(stack.wait_ready, 90, services)
        yield stack
    finally:
        await asyncio.to_thread(stack.stop_all)
        await stack.delete_topics()
        await stack.delete_keys()


def running_stack(
    kafka: str,
    redis: str,
    log_dir: Path,
    *,
    prefix: str = "t",
    extra_env: dict[str, str] | None = None,
    ready_timeout: float = 90,
) -> Iterator[ServiceStack]:
    """The four services as real processes, on free ports, in a private topic prefix and Redis namespace."""
    run_id = uuid.uuid4().hex[:8]
    stack = ServiceStack(
        kafka=kafka,
        redis=redis,
        prefix=f"{prefix}{run_id}.",
        namespace=f"{prefix}{run_id}",
        ports={name: free_port() for name in ("publisher", "ingest", "comments", "related")},
        log_dir=log_dir,
        extra_env=dict(extra_env or {}),
    )
    asyncio.run(stack.create_topics())
    stack.start_all()
    try:
        stack.wait_ready(timeout=ready_timeout)
        yield stack
    finally:
        stack.stop_all()
        asyncio.run(stack.delete_topics())
        asyncio.run(stack.delete_keys())
