"""The JSON log stream: one object per line for the project's lines and the libraries' alike, secrets never
written, and odd values (bytes that are not UTF-8, NaN) encoded instead of breaking the line."""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
from pathlib import Path

from shared.logging import RepeatLimiter

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


FLOOD_SCRIPT = """
import logging
from shared.logging import configure_logging
configure_logging("svc", fmt="json")
library = logging.getLogger("aiokafka")
for node in range(500):  # a broker restart: the same failure, retried every few milliseconds
    library.error("Unable connect to node with id %s: %s", node % 3, "Connection refused")
library.warning("Marking the coordinator dead (node %s)", 1)
logging.getLogger().handlers[0].filters[0].window = 0.0  # the window has passed
library.error("Unable connect to node with id %s: %s", 1, "Connection refused")
logging.getLogger("uvicorn.access").setLevel(logging.INFO)
for n in range(3):
    logging.getLogger("uvicorn.access").info("GET /a/%s 200", n)
"""


def test_a_library_repeating_one_failure_writes_one_line_per_window() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FLOOD_SCRIPT], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    )
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.strip()]
    assert [line["event"] for line in lines] == [
        "Unable connect to node with id 0: Connection refused",
        "Marking the coordinator dead (node 1)",
        "Unable connect to node with id 1: Connection refused",
        "GET /a/0 200", "GET /a/1 200", "GET /a/2 200",  # below WARNING: never held back
    ]
    assert "repeats_not_logged" not in lines[0] and lines[2]["repeats_not_logged"] == 499


def test_the_next_line_of_a_kind_says_how_many_were_held_back() -> None:
    now = [0.0]
    limiter = RepeatLimiter(window=10.0, clock=lambda: now[0])

    def record(message: str, *args: object, level: int = logging.ERROR, name: str = "aiokafka") -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, message, args, None)

    refused = "Unable connect to node with id %s: %s"
    assert limiter.filter(record(refused, 1, "refused"))
    assert not any(limiter.filter(record(refused, n, "refused")) for n in range(41))
    # another logger, level or template is another kind
    assert limiter.filter(record(refused, 1, "refused", name="aiokafka.consumer.fetcher"))
    assert limiter.filter(record(refused, 1, "refused", level=logging.WARNING))
    assert limiter.filter(record("Heartbeat failed: %s", "x"))
    now[0] = 9.9
    assert not limiter.filter(record(refused, 2, "refused"))
    now[0] = 10.0
    passed = record(refused, 2, "refused")
    assert limiter.filter(passed) and passed.repeats_not_logged == 42  # type: ignore[attr-defined]
    now[0] = 25.0
    quiet = record(refused, 2, "refused")
    assert limiter.filter(quiet) and not hasattr(quiet, "repeats_not_logged")


def test_messages_formatted_before_logging_do_not_grow_the_limiter_without_bound() -> None:
    now = [0.0]
    limiter = RepeatLimiter(window=10.0, clock=lambda: now[0])
    for n in range(RepeatLimiter.MAX_KINDS * 3):
        now[0] = n * 0.1
        assert limiter.filter(logging.LogRecord("lib", logging.WARNING, __file__, 1, f"failure {n}", (), None))
    assert len(limiter._kinds) <= RepeatLimiter.MAX_KINDS


BUFFERED_SCRIPT = """
import os, sys, time
import shared.logging
shared.logging.LOG_FLUSH_SECONDS = float(sys.argv[1])
from shared.logging import configure_logging, get_logger
configure_logging("svc", fmt="json")
log = get_logger("tests.logging")
log.info("first")
if sys.argv[2] == "warn-then-die":
    print("a traceback, say", file=sys.stderr)
    log.warning("second")
    os._exit(0)  # no exit handlers: only what was written out survives
elif sys.argv[2] == "die":
    os._exit(0)
elif sys.argv[2] == "wait":
    time.sleep(30)
"""


def run_buffered(flush_seconds: float, mode: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", BUFFERED_SCRIPT, str(flush_seconds), mode],
        cwd=REPO, capture_output=True, text=True, check=True, timeout=60,
    )
    return [json.loads(line)["event"] if line.startswith("{") else line for line in done.stderr.splitlines()]


def test_an_info_line_waits_at_most_the_flush_interval() -> None:
    """INFO lines are buffered, not lost: a process that keeps running writes them out within the interval."""
    proc = subprocess.Popen(
        [sys.executable, "-c", BUFFERED_SCRIPT, "0.1", "wait"], cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        ready, _, _ = select.select([proc.stderr], [], [], 10)
        assert ready, "the INFO line was not written while the process ran"
        assert json.loads(proc.stderr.readline())["event"] == "first"
    finally:
        proc.kill()
        proc.wait()


def test_a_warning_writes_out_the_lines_before_it_at_once() -> None:
    """Whatever else goes to stderr (here a print) shares the buffer, so it keeps its place among the lines."""
    assert run_buffered(60, "warn-then-die") == ["first", "a traceback, say", "second"]


def test_lines_still_buffered_at_exit_are_written() -> None:
    assert run_buffered(60, "exit") == ["first"]


def test_info_lines_are_not_written_one_system_call_each() -> None:
    """The trade-off, bounded by the interval: a process killed outright loses the INFO lines still waiting."""
    assert run_buffered(60, "die") == []
