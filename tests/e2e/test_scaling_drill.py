"""Scale every consuming service 1 → 3 → 2 instances under a steady draft load (bench/scaling_drill.py runs the
long version): every draft reaches its page once, and every group's lag returns to 0 after each step."""

from __future__ import annotations

import os

import pytest

from bench.scaling_drill import run_drill
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.drill  # `make drill` runs the drills alone

RATE = float(os.environ.get("DRILL_RATE", "20"))
STEP_SECONDS = float(os.environ.get("DRILL_STEP_SECONDS", "20"))


async def test_scaling_drill_loses_and_duplicates_nothing(private_stack: ServiceStack) -> None:
    report = await run_drill(private_stack, rate=RATE, step_seconds=STEP_SECONDS, steps=[1, 3, 2], lag_timeout=60)
    print(report["steps"], f"drain {report['drain_s']}s")
    assert [s["instances"] for s in report["steps"]] == [1, 3, 2]
    assert report["sent"] >= RATE * STEP_SECONDS * 2, report["steps"]
    assert report["missing"] == [], f"{len(report['missing'])} drafts without their page: {report['missing'][:10]}"
    assert report["duplicates"] == [], f"listed twice: {report['duplicates'][:10]}"
    assert report["unlisted"] == [], f"missing from the section listing: {report['unlisted'][:10]}"
    assert report["unexpected"] == []
    assert report["listed"] == report["sent"]
