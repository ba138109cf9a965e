"""`broadsheet drafts post` keys each draft by its guid, and a file it cannot read as a draft by nothing; a
setting the environment gets wrong is said in one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import guid_of


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
