"""The suite's own Kafka broker and Redis, which faults may kill, flush and restart, and the distinctive secrets
the services of the suite run with."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis as redis_sync

from tests.support.stack import REPO

LOCAL = REPO / "deploy" / "local"


@dataclass
class Secrets:
    """Values distinctive enough that finding one in a log line cannot be a coincidence."""

    ingest_token: str = field(default_factory=lambda: f"ingtok-{secrets.token_hex(12)}")
    moderation_token: str = field(default_factory=lambda: f"modtok-{secrets.token_hex(12)}")
    push_key: str = field(default_factory=lambda: f"pushkey-{secrets.token_hex(12)}")
    form_secret: str = field(default_factory=lambda: f"formsecret-{secrets.token_hex(12)}")
    hash_key: str = field(default_factory=lambda: f"hashkey-{secrets.token_hex(12)}")
    redis_password: str = field(default_factory=lambda: f"redispw{secrets.token_hex(12)}")

    def values(self) -> dict[str, str]:
        return {
            "INGEST_TOKEN": self.ingest_token,
            "MODERATION_TOKEN": self.moderation_token,
            "SUPERDESK_PUSH_KEY": self.push_key,
            "COMMENT_FORM_SECRET": self.form_secret,
            "COMMENTS_HASH_KEY": self.hash_key,
            "REDIS_PASSWORD": self.redis_password,
        }


@dataclass
class PrivateInfra:
    """A Kafka broker and a Redis of the suite's own, which the faults may kill, flush and restart."""

    run_dir: Path
    kafka_port: int
    controller_port: int
    redis_port: int
    password: str
    instance: str = field(default_factory=lambda: f"kafka-chaos-{uuid.uuid4().hex[:6]}")

    @property
    def kafka(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def redis_url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.redis_port}/0"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "BROADSHEET_RUN_DIR": str(self.run_dir),
            "KAFKA_INSTANCE": self.instance,
            "KAFKA_PORT": str(self.kafka_port),
            "KAFKA_CONTROLLER_PORT": str(self.controller_port),
            "REDIS_PORT": str(self.redis_port),
            "PYTHON": str(REPO / ".venv" / "bin" / "python"),
        }

    def _script(self, name: str, action: str, timeout: float = 180) -> None:
        done = subprocess.run(
            [str(LOCAL / name), action], env=self._env(), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            raise RuntimeError(f"{name} {action} failed:\n{done.stdout}\n{done.stderr}")

    # --- Kafka ---------------------------------------------------------------------------------------------

    def start_kafka(self) -> None:
        self._script("kafka.sh", "start")

    def wait_group_coordinator(self, within: float = 60) -> None:
        """A new broker answers metadata before it can coordinate groups (`__consumer_offsets` is created on
        first use). Services must cope with that; the suite waits so that its faults start from a served broker."""
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> None:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.kafka)
            await admin.start()
            try:
                deadline = time.monotonic() + within
                while True:
                    try:
                        await admin.find_coordinator("chaos-warm-up")
                        return
                    except Exception:
                        if time.monotonic() > deadline:
                            raise
                        await asyncio.sleep(0.5)
            finally:
                await admin.close()

        asyncio.run(probe())

    def stop_kafka(self) -> None:
        self._script("kafka.sh", "stop")

    def kafka_pid(self) -> int:
        return int((self.run_dir / self.instance / "kafka.pid").read_text().strip())

    def kill_kafka(self) -> None:
        """kill -9 the broker: no controlled shutdown, unflushed segments, the clients see it vanish."""
        pid = self.kafka_pid()
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    # --- Redis ---------------------------------------------------------------------------------------------

    def redis_pidfile(self) -> Path:
        return self.run_dir / f"redis-{self.redis_port}" / "redis.pid"

    def start_redis(self) -> None:
        self._script("redis.sh", "start", timeout=60)
        # redis.sh runs without a password; the suite sets one so that it can look for it in the logs
        client = redis_sync.Redis(host="127.0.0.1", port=self.redis_port)
        client.config_set("requirepass", self.password)
        client.close()

    def redis(self) -> redis_sync.Redis:
        return redis_sync.Redis(host="127.0.0.1", port=self.redis_port, password=self.password)

    def flushall(self) -> None:
        client = self.redis()
        client.flushall()
        client.close()

    def restart_redis(self) -> None:
        """Kill Redis (persistence is off, so it comes back empty) and start it again."""
        pid = int(self.redis_pidfile().read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.redis_pidfile().unlink(missing_ok=True)
        self.start_redis()

    def stop_redis(self) -> None:
        self._script("redis.sh", "stop", timeout=30)
