"""SIGTERM and restart each service in turn under load: each drains and exits 0 within its grace period (25 s),
and nothing is lost or shown twice."""

from __future__ import annotations

import pytest

from bench.scaling_drill import run_restarts
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.drill  # `make drill` runs the drills alone

GRACE_SECONDS = 25


async def test_rolling_restart_under_load(private_stack: ServiceStack) -> None:
    report = await run_restarts(private_stack, rate=20)
    print(report["restarts"], f"drain {report['drain_s']}s")
    for service, outcome in report["restarts"].items():
        assert outcome["seconds"] <= GRACE_SECONDS, f"{service} took {outcome['seconds']}s to stop"
    assert report["missing"] == [], f"{len(report['missing'])} drafts without their page: {report['missing'][:10]}"
    assert report["duplicates"] == [], f"listed twice: {report['duplicates'][:10]}"
    assert report["unlisted"] == []
    assert report["unexpected"] == []
    assert report["listed"] == report["sent"]
    codes = {service: outcome["exit_code"] for service, outcome in report["restarts"].items()}
    assert set(codes.values()) == {0}, f"exit codes after SIGTERM: {codes}"
