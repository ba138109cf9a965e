"""In production a service refuses to start while a secret still holds its published default; a service the
environment misconfigures says which setting in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.comments.config import CommentsSettings
from services.ingest.config import IngestSettings
from services.publisher.config import PublisherSettings
from shared.settings import ServiceSettings

SECRETS: dict[type[ServiceSettings], tuple[str, ...]] = {
    IngestSettings: ("INGEST_TOKEN", "SUPERDESK_PUSH_KEY"),
    CommentsSettings: ("MODERATION_TOKEN", "COMMENTS_HASH_KEY"),
    PublisherSettings: ("COMMENT_FORM_SECRET",),
}
CASES = [(cls, name) for cls, names in SECRETS.items() for name in names]


@pytest.mark.parametrize(("cls", "missing"), CASES, ids=[name for _, name in CASES])
def test_production_refuses_a_default_secret(
    cls: type[ServiceSettings], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    for name in SECRETS[cls]:
        if name != missing:
            monkeypatch.setenv(name, f"operator-{name.lower()}")
    with pytest.raises(ValidationError, match=missing):
        cls()
    monkeypatch.setenv(missing, f"operator-{missing.lower()}")
    cls()


def test_development_starts_with_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    for cls in SECRETS:
        cls()


@pytest.mark.parametrize("service", ["ingest", "comments", "publisher", "related"])
def test_a_service_the_environment_misconfigures_exits_2_with_one_json_line(service: str) -> None:
    """What a crash-looping pod's log shows: which setting and why, no traceback, no secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "REDIS_", "LOG_"))}
    env.update({"KAFKA_PARTITIONS": "0", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                "KAFKA_SASL_PASSWORD": "hunter2-not-printed", "ENVIRONMENT": "development"})
    answer = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], cwd=Path(__file__).resolve().parents[2], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert answer.returncode == 2, answer.stderr[-2000:]
    [line] = answer.stderr.strip().splitlines()
    said = json.loads(line)
    assert (said["event"], said["level"], said["service"]) == ("configuration invalid", "critical", service)
    assert {"setting": "KAFKA_PARTITIONS", "problem": "Input should be greater than or equal to 1"} in said["errors"]
    assert "hunter2" not in answer.stderr
