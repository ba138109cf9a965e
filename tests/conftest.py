"""Session fixtures for tests against the real Kafka and Redis that `make test` starts.

Tests marked `real` or `e2e` FAIL (never skip) when Kafka or Redis is down: a green run must mean the system
was exercised. Each session works in its own topic prefix and Redis namespace, so runs never see each other's
data (and never a developer's `make run` data).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from shared.redis import unlink_matching
from tests.support.stack import ServiceStack, kafka_answers, redis_answers, running_stack

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/e2e/" in str(item.path) or "/tests/real/" in str(item.path):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def infra() -> dict[str, str]:
    problems = []
    if not kafka_answers(KAFKA):
        problems.append(f"Kafka does not answer on {KAFKA}")
    if not redis_answers(REDIS):
        problems.append(f"Redis does not answer on {REDIS}")
    if problems:
        pytest.fail("; ".join(problems) + " — start them with `deploy/local/stack.sh infra` (make test does)")
    return {"kafka": KAFKA, "redis": REDIS}


@pytest.fixture
async def redis_namespace(infra: dict[str, str]) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A client of the real Redis and a namespace of the test's own, emptied afterwards (for tests that drive a
    service's Redis code directly, without a stack)."""
    client = aioredis.Redis.from_url(infra["redis"])
    ns = f"t{uuid.uuid4().hex[:10]}"
    try:
        yield client, ns
    finally:
        await unlink_matching(client, f"{ns}:*")
        await client.aclose()


@pytest.fixture(scope="session")
def stack(infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """One stack shared by the session's end-to-end tests (each test uses its own guids and sections)."""
    yield from running_stack(infra["kafka"], infra["redis"], tmp_path_factory.mktemp("service-logs"))


@pytest.fixture(scope="module")
def private_stack(infra: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceStack]:
    """A stack of its own, for a test whose load would slow the shared one down (a whole corpus, faults)."""
    yield from running_stack(infra["kafka"], infra["redis"], tmp_path_factory.mktemp("private-service-logs"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not present: the shared research data ships beside the repo in CI only")
    return SHARED_DATA


@pytest.fixture
async def producer(infra: dict[str, str]) -> AsyncIterator[object]:
    """A plain aiokafka producer, deliberately not the project's own producing code."""
    from aiokafka import AIOKafkaProducer

    p = AIOKafkaProducer(bootstrap_servers=infra["kafka"], acks="all", max_request_size=4 * 1024 * 1024)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()
