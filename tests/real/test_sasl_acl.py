"""Kafka with authentication and ACLs, configured purely through the services' environment settings.

A second broker (deploy/local/kafka-sasl.sh: SASL/SCRAM-SHA-512, StandardAuthorizer, nothing allowed without an
ACL) is started for this module in its own state directory and on free ports, and stopped at the end. Each
service connects as its own user; Redis is reached as an ACL user restricted to the test's key prefix.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest
import redis.asyncio as aioredis
from aiokafka import AIOKafkaProducer

from shared.cli import client_options
from shared.settings import ServiceSettings
from tests.support.drafts import make_draft
from tests.support.stack import REPO, ServiceStack, free_port

SCRIPT = REPO / "deploy" / "local" / "kafka-sasl.sh"
ADMIN_PASSWORD = f"admin-{uuid.uuid4().hex[:10]}"
PASSWORDS = {s: f"{s}-{uuid.uuid4().hex[:10]}" for s in ("ingest", "related", "comments", "publisher")}


@dataclass
class SaslBroker:
    bootstrap: str
    env: dict[str, str]

    def settings(self, user: str, password: str) -> ServiceSettings:
        return ServiceSettings(
            kafka_bootstrap_servers=self.bootstrap, kafka_security_protocol="SASL_PLAINTEXT",
            kafka_sasl_mechanism="SCRAM-SHA-512", kafka_sasl_username=user, kafka_sasl_password=password,
        )

    def admin(self) -> ServiceSettings:
        return self.settings("admin", ADMIN_PASSWORD)

    def service_env(self, service: str, *, password: str | None = None, user: str | None = None) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user or f"broadsheet-{service}",
            "KAFKA_SASL_PASSWORD": password or PASSWORDS[service],
        }


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory, infra: dict[str, str]) -> Iterator[SaslBroker]:
    run_dir = tmp_path_factory.mktemp("kafka-sasl")
    port, controller = free_port(), free_port()
    env = {
        **os.environ,
        "BROADSHEET_RUN_DIR": str(run_dir),
        "KAFKA_SASL_PORT": str(port),
        "KAFKA_SASL_CONTROLLER_PORT": str(controller),
        "KAFKA_SASL_ADMIN_PASSWORD": ADMIN_PASSWORD,
        "KAFKA_TOPIC_PREFIX": "",
        **{f"KAFKA_SASL_{s.upper()}_PASSWORD": p for s, p in PASSWORDS.items()},
    }
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        env.pop(name, None)
    started = time.monotonic()
    result = subprocess.run(
        [str(SCRIPT), "start"], env=env, cwd=REPO, capture_output=True, text=True, timeout=240, check=False
    )
    if result.returncode != 0:
        subprocess.run([str(SCRIPT), "stop"], env=env, cwd=REPO, capture_output=True, timeout=60, check=False)
        pytest.fail(f"the SASL broker did not start ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    print(f"SASL broker provisioned in {time.monotonic() - started:.1f}s")
    try:
        yield SaslBroker(f"127.0.0.1:{port}", env)
    finally:
        subprocess.run([str(SCRIPT), "stop"], env=env, cwd=REPO, capture_output=True, timeout=60, check=False)


class SaslStack(ServiceStack):
    """The usual service processes, each with its own Kafka user (and the Redis ACL user in REDIS_URL)."""

    broker: SaslBroker | None = None

    def env(self, service: str, instance: int = 0) -> dict[str, str]:
        assert self.broker is not None
        return {**super().env(service, instance), **self.broker.service_env(service)}


@pytest.fixture(scope="module")
async def redis_acl_user(infra: dict[str, str]) -> AsyncIterator[tuple[str, str]]:
    """A Redis ACL user that may touch only `<namespace>:*` keys; removed afterwards."""
    namespace = f"sasl{uuid.uuid4().hex[:8]}"
    user, password = f"bs-{namespace}", uuid.uuid4().hex
    admin = aioredis.Redis.from_url(infra["redis"])
    await admin.execute_command(
        "ACL", "SETUSER", user, "reset", "on", f">{password}", f"~{namespace}:*",
        f"&{namespace}:*", "&__redis__:invalidate", "+@all", "-@dangerous", "+client|tracking", "+client|id",
    )
    parsed = urlparse(infra["redis"])
    url = f"redis://{user}:{password}@{parsed.hostname or '127.0.0.1'}:{parsed.port or 6379}/0"
    try:
        yield namespace, url
    finally:
        keys = [k async for k in admin.scan_iter(match=f"{namespace}:*", count=1000)]
        if keys:
            await admin.delete(*keys)
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


@pytest.fixture(scope="module")
def sasl_stack(
    sasl_broker: SaslBroker, redis_acl_user: tuple[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SaslStack]:
    namespace, redis_url = redis_acl_user
    stack = SaslStack(
        kafka=sasl_broker.bootstrap, redis=redis_url, prefix="", namespace=namespace,
        ports={name: free_port() for name in ("publisher", "ingest", "comments", "related")},
        log_dir=tmp_path_factory.mktemp("sasl-service-logs"),
    )
    stack.broker = sasl_broker
    try:
        yield stack
    finally:
        stack.stop_all()


async def test_services_authenticate_with_their_own_users(sasl_broker: SaslBroker, sasl_stack: SaslStack) -> None:
    for service in ("ingest", "related", "publisher"):
        sasl_stack.start(service)
    sasl_stack.wait_ready(timeout=90, services=("ingest", "related", "publisher"))

    draft = make_draft(f"sasl-{uuid.uuid4().hex[:10]}")
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **client_options(sasl_broker.admin()))
    await producer.start()
    try:
        await producer.send_and_wait("newsroom.drafts", json.dumps(draft).encode(), key=draft["guid"].encode())
    finally:
        await producer.stop()

    async def page() -> str | None:
        async with httpx.AsyncClient(base_url=sasl_stack.url("publisher")) as client:
            first = await client.get(f"/a/{draft['guid']}")
            if first.status_code != 301:
                return None
            body = (await client.get(first.headers["location"])).text
            return body if '<meta name="broadsheet:version" content="1">' in body else None

    body = await sasl_stack.wait_for(page, timeout=30, interval=0.2)
    logs = sasl_stack.log("ingest")[-2000:] + sasl_stack.log("publisher")[-2000:]
    assert body, f"the draft never reached its page:\n{logs}"
    assert draft["headline"] in body

    for service in ("ingest", "related", "publisher"):
        sasl_stack.stop(service)


WRITE_AS = """
import asyncio
from shared.kafka import make_broker
from shared.logging import configure_logging, get_logger
from shared.settings import ServiceSettings

async def main() -> None:
    settings = ServiceSettings()
    configure_logging("comments", level="INFO", fmt="json")
    log = get_logger("probe")
    broker = make_broker(settings, "comments")
    await broker.start()
    try:
        await broker.publish(b"{}", topic="broadsheet.articles", key=b"intruder")
        log.info("write accepted")
    except Exception as exc:
        log.error("write refused", error=type(exc).__name__, detail=str(exc))
        raise SystemExit(3) from None
    finally:
        await broker.stop()

asyncio.run(main())
"""


async def test_comments_credentials_cannot_write_articles(sasl_broker: SaslBroker) -> None:
    before = await end_offsets(sasl_broker, "broadsheet.articles")
    env = {**os.environ, **sasl_broker.service_env("comments"), "LOG_FORMAT": "json"}
    started = time.monotonic()
    result = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", WRITE_AS], env=env, cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 3, output
    refused = [json.loads(line) for line in output.splitlines() if line.startswith("{") and "write refused" in line]
    assert refused, output
    assert refused[0]["error"] == "TopicAuthorizationFailedError", refused
    assert "broadsheet.articles" in refused[0]["detail"]
    assert elapsed < 30, f"the refusal took {elapsed:.1f}s: it should fail at once, not retry"
    assert await end_offsets(sasl_broker, "broadsheet.articles") == before


async def test_comments_service_runs_with_its_own_user_only(sasl_broker: SaslBroker, sasl_stack: SaslStack) -> None:
    """The comments service reads and writes only what its ACLs allow, so it starts and stays up: its start-up
    rebuilds its Redis view from the log, its own decisions topic included (a decision is there to be read)."""
    decided = {
        "event": "comment.decided", "id": "c-acl-1", "article_guid": "acl-story", "status": "approved",
        "actor": "pipeline", "decided_at": "2026-01-01T00:00:00Z", "revision": 1, "author": "Reader",
        "body_html": "<p>Hello.</p>", "submitted_at": "2026-01-01T00:00:00Z",
    }
    producer = AIOKafkaProducer(acks="all", **client_options(sasl_broker.admin()))
    await producer.start()
    try:
        await producer.send_and_wait("broadsheet.comments.decisions", json.dumps(decided).encode(), key=b"acl-story")
    finally:
        await producer.stop()
    sasl_stack.start("comments")
    sasl_stack.wait_ready(timeout=60, services=("comments",))
    await asyncio.sleep(3)
    assert all(p.poll() is None for p in sasl_stack.processes["comments"])
    log = sasl_stack.log("comments")
    assert "AuthorizationFailed" not in log and "not authorized" not in log, log[-3000:]
    sasl_stack.stop("comments")


async def test_wrong_password_fails_authentication_clearly(
    sasl_broker: SaslBroker, sasl_stack: SaslStack
) -> None:
    port = free_port()
    env = {
        **sasl_stack.env("ingest"),
        **sasl_broker.service_env("ingest", password="not-the-password"),
        "INGEST_HTTP_PORT": str(port),
    }
    log_path = Path(sasl_stack.log_dir) / "ingest-wrong-password.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(  # noqa: ASYNC220 - a long-lived service process, polled below
            [sys.executable, "-m", "services.ingest"], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        text = ""
        while time.monotonic() < deadline:
            text = log_path.read_text(errors="replace")
            if "SaslAuthenticationFailed" in text:
                break
            await asyncio.sleep(0.2)
        assert "SaslAuthenticationFailed" in text, text[-3000:]
        assert "invalid credentials" in text
        async with httpx.AsyncClient() as client:
            try:
                ready = (await client.get(f"http://127.0.0.1:{port}/readyz", timeout=5)).status_code
            except httpx.HTTPError:
                ready = None
        assert ready != 200, "a service that cannot authenticate must not report ready"
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def end_offsets(broker: SaslBroker, topic: str) -> dict[int, int]:
    from aiokafka import TopicPartition

    from shared.cli import _partitions, reader

    async with reader(broker.admin()) as consumer:
        parts = await _partitions(consumer, topic)
        ends = await consumer.end_offsets([TopicPartition(topic, p) for p in parts])
        return {tp.partition: offset for tp, offset in ends.items()}
