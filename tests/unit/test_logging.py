"""The JSON log stream: one object per line for the project's lines and the libraries' alike, secrets never
written, and odd values (bytes that are not UTF-8, NaN) encoded instead of breaking the line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import logging
from shared.logging import configure_logging, get_logger, log_context
configure_logging("svc", fmt="json")
log = get_logger("tests.logging")
log.info("draft ingested", guid="g-1", redis_url="redis://:hunter2@x", Authorization="Bearer t0ken", version=3)
log.warning("odd values", raw=b"\\xff\\xfe", ratio=float("nan"), word="Łódź")
logging.getLogger("aiokafka").warning("library line %s", 7)
with log_context(guid="g-2", receipt="r-2"):
    with log_context(guid="g-3"):
        log.info("inner")
        logging.getLogger("aiokafka").warning("library inside")
    log.info("outer", receipt="explicit")
log.info("after")
"""


def test_json_lines_with_secrets_redacted() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    events = ["draft ingested", "odd values", "library line 7", "inner", "library inside", "outer", "after"]
    assert [line["event"] for line in lines] == events
    first, odd, library, inner, library_inside, outer, after = lines
    assert first["redis_url"] == "***" and first["Authorization"] == "***"
    assert "hunter2" not in done.stderr and "t0ken" not in done.stderr
    assert first["guid"] == "g-1" and first["version"] == 3 and first["service"] == "svc"
    assert odd["word"] == "Łódź" and odd["raw"].startswith("b'")
    assert library["logger"] == "aiokafka" and library["level"] == "warning"
    assert (inner["guid"], inner["receipt"], inner["service"]) == ("g-3", "r-2", "svc")
    assert (library_inside["guid"], library_inside["receipt"]) == ("g-3", "r-2")
    assert (outer["guid"], outer["receipt"]) == ("g-2", "explicit")  # the call's own field wins
    assert "guid" not in after and "receipt" not in after and after["service"] == "svc"
