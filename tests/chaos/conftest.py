"""Fixtures of the fault-injection and abuse suite.

Faults that kill or restart servers run against a Kafka broker and a Redis started here, on free ports, in a
private run directory — never the shared 127.0.0.1:9092 / 6379 that the rest of the suite uses at the same time.
The services of the suite run with distinctive secret values (tokens, push key, form secret, the Redis password),
so that `test_secrets.py` can search every log line for them.

Profiles: `short` (the default, part of `make test`) and `long` (`--chaos-profile=long`, run by `make chaos`,
which also writes docs/chaos-report.md).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.harness import Profile, profile_named
from tests.chaos.infra import PrivateInfra, Secrets
from tests.chaos.report import render_report
from tests.support.stack import REPO, ServiceStack, free_port, running_stack

CHAOS_DIR = Path(__file__).resolve().parent
REPORT = REPO / "docs" / "chaos-report.md"
RESULTS = REPO / ".run" / "chaos-results.json"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--chaos-profile", choices=("short", "long"), default="short",
        help="fault-injection profile: short (part of make test) or long (the full matrix and the report)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: fault injection and abuse tests (tests/chaos)")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if CHAOS_DIR in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.chaos)
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def chaos_profile(request: pytest.FixtureRequest) -> Profile:
    return profile_named(str(request.config.getoption("--chaos-profile", default="short")))


@pytest.fixture(scope="session")
def chaos_secrets() -> Secrets:
    return Secrets()


@pytest.fixture(scope="session")
def private_infra(tmp_path_factory: pytest.TempPathFactory, chaos_secrets: Secrets) -> Iterator[PrivateInfra]:
    infra = PrivateInfra(
        run_dir=tmp_path_factory.mktemp("chaos-run"),
        kafka_port=free_port(),
        controller_port=free_port(),
        redis_port=free_port(),
        password=chaos_secrets.redis_password,
    )
    try:
        infra.start_redis()
        infra.start_kafka()
        infra.wait_group_coordinator()
    except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
        for stop in (infra.stop_kafka, infra.stop_redis):
            with contextlib.suppress(Exception):  # best effort after a failed start
                stop()
        pytest.fail(f"could not start the suite's private Kafka and Redis: {exc}")
    try:
        yield infra
    finally:
        for stop in (infra.stop_kafka, infra.stop_redis):
            try:
                stop()
            except Exception as exc:  # pragma: no cover - reported, not raised, so both get stopped
                print(f"chaos clean-up: {exc}")


@pytest.fixture(scope="session")
def chaos_stack(
    private_infra: PrivateInfra, chaos_secrets: Secrets, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    """The four services on the private Kafka and Redis, with the distinctive secrets."""
    values = chaos_secrets.values()
    values.pop("REDIS_PASSWORD")
    yield from running_stack(
        private_infra.kafka, private_infra.redis_url, tmp_path_factory.mktemp("chaos-service-logs"),
        prefix="c", extra_env=values, ready_timeout=120,
    )


@pytest.fixture(scope="session")
def chaos_results(chaos_profile: Profile) -> Iterator[list[dict[str, Any]]]:
    """One row per fault run. The rows are kept in .run/chaos-results.json; the long profile renders them into
    docs/chaos-report.md when the session ends (`python -m tests.chaos.report` renders them again)."""
    rows: list[dict[str, Any]] = []
    yield rows
    if not rows:
        return
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(rows, indent=1))
    if chaos_profile.name == "long":
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text(render_report(rows, profile=chaos_profile.name))
