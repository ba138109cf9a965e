"""The local stack's scripts (`make up`, `make down`, `make run`) act only on processes they started.

A pid file outlives its process (a crash, a reboot), and its pid may since belong to another process. The scripts
took that one for a running service, broker or Redis: `make up` did not start the service, and `make down` sent
the stranger SIGTERM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.support.stack import REPO

STACK = REPO / "deploy" / "local" / "stack.sh"
KAFKA = REPO / "deploy" / "local" / "kafka.sh"
REDIS = REPO / "deploy" / "local" / "redis.sh"


def run(script: Path, command: str, run_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "BROADSHEET_RUN_DIR": str(run_dir),
        "KAFKA_PORT": "1",  # nothing answers there: only the pid files speak
        "REDIS_PORT": "1",
        **{f"{name}_HTTP_PORT": "1" for name in ("PUBLISHER", "INGEST", "COMMENTS", "RELATED")},
    }
    return subprocess.run([str(script), command], env=env, capture_output=True, text=True, timeout=120, check=False)


def pid_files(run_dir: Path, pid: int) -> None:
    for relative in ("services/ingest.pid", "kafka/kafka.pid", "redis-1/redis.pid"):
        path = run_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"{pid}\n")


def test_a_pid_file_naming_another_process_is_neither_taken_for_ours_nor_signalled(tmp_path: Path) -> None:
    stranger = subprocess.Popen(["sleep", "120"])
    try:
        pid_files(tmp_path, stranger.pid)

        status = run(STACK, "status", tmp_path)
        assert re.search(r"^ingest\s+stopped", status.stdout, re.MULTILINE), status.stdout

        for script, command in ((STACK, "down"), (KAFKA, "stop"), (REDIS, "stop")):
            pid_files(tmp_path, stranger.pid)
            done = run(script, command, tmp_path)
            assert done.returncode == 0, (script.name, done.stderr)
            assert stranger.poll() is None, f"{script.name} {command} signalled a process it had not started"
    finally:
        stranger.kill()
        stranger.wait()


def test_a_service_the_pid_file_names_is_recognised_and_stopped(tmp_path: Path) -> None:
    # A process whose command line names the service, as `python -m services.ingest` does.
    service = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "services.ingest"])
    try:
        pid_files(tmp_path, service.pid)
        status = run(STACK, "status", tmp_path)
        assert re.search(r"^ingest\s+running, not ready", status.stdout, re.MULTILINE), status.stdout

        reaper = threading.Thread(target=service.wait)  # a child of this test: reaped at once, not left a zombie
        reaper.start()
        run(STACK, "down", tmp_path)
        reaper.join(timeout=10)
        assert service.returncode == -signal.SIGTERM
        assert not (tmp_path / "services" / "ingest.pid").exists()
    finally:
        service.kill()
        service.wait()


def test_a_pid_file_whose_process_is_gone_reads_as_stopped_without_a_word_on_stderr(tmp_path: Path) -> None:
    """A process that exits between the pid file's check and the read of its command line (as at every Ctrl-C of
    `make run`) left "/proc/…/cmdline: No such file or directory" in the output."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    pid_files(tmp_path, gone.pid)
    script = f'. "{REPO / "deploy" / "local" / "pidfile.sh"}"; runs "$1" ingest && echo running || echo stopped'
    result = subprocess.run(
        ["bash", "-c", script, "runs", str(tmp_path / "services" / "ingest.pid")],
        capture_output=True, text=True, timeout=30, check=False,
    )
    assert result.stdout.strip() == "stopped"
    assert result.stderr == ""
