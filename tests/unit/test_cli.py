"""`broadsheet drafts post` keys each draft by its guid, and a file it cannot read as a draft by nothing; a
setting the environment gets wrong is said in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from shared.cli import client_options, guid_of, reader_options
from shared.kafka import FETCH_MAX_WAIT_MS
from shared.settings import ServiceSettings


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b'{"guid": "story-1", "uri": "urn:x"}', b"story-1"),
        (b'{"uri": "urn:newsml:example.org:1"}', b"urn:newsml:example.org:1"),
        (b'["story-1"]', b""),
        (b"{not json", b""),
        (b"", b""),
        (b'{"guid": "g", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", b""),
    ],
)
def test_a_draft_file_is_keyed_by_its_guid(raw: bytes, key: bytes) -> None:
    assert guid_of(raw) == key


def test_a_setting_the_environment_gets_wrong_is_one_line_and_exit_2() -> None:
    """`site rebuild` reads the publisher's settings: in production a default secret is refused, by name."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMMENT_", "KAFKA_", "REDIS_"))}
    answer = subprocess.run(
        [sys.executable, "-m", "shared.cli", "site", "rebuild", "--dry-run"],
        cwd=Path(__file__).resolve().parents[2], env={**env, "ENVIRONMENT": "production", "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert answer.returncode == 2, answer.stderr
    assert "configuration:" in answer.stderr and "COMMENT_FORM_SECRET" in answer.stderr
    assert "Traceback" not in answer.stderr and "╭" not in answer.stderr


def test_a_log_reader_keeps_the_security_settings_and_the_services_fetch_hold() -> None:
    """Rebuilds and the CLI read the log with `reader_options`: the broker holds an empty fetch as long as for the
    services' consumers (a held fetch delays the reader's next metadata or offset request), and a SASL deployment's
    readers still authenticate."""
    settings = ServiceSettings(
        kafka_bootstrap_servers="kafka:9092", kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_username="comments", kafka_sasl_password=SecretStr("s3cret"),
    )
    options = reader_options(settings)
    assert options["fetch_max_wait_ms"] == FETCH_MAX_WAIT_MS < 500
    assert {k: v for k, v in options.items() if k != "fetch_max_wait_ms"} == client_options(settings)
    assert options["bootstrap_servers"] == "kafka:9092" and options["sasl_plain_username"] == "comments"
