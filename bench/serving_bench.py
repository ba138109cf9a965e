"""Serving speed: one publisher worker answering a cached article page, against nginx serving the same bytes
from a file with one worker, in the same run, with the same load generator (wrk) and settings.

    .venv/bin/python -m bench.serving_bench --seconds 10 --connections 32

Prints requests/s and latency percentiles for both, and the ratio (target >= 0.5 of nginx, p99 <= 5 ms).
The load generator shares the machine's two cores with the server, as it does for nginx.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from aiokafka import AIOKafkaProducer

from tests.support.stack import ServiceStack, free_port

REPO = Path(__file__).resolve().parents[1]
KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
REDIS = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def wrk(url: str, seconds: int, connections: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True, capture_output=True, text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]

    def ms(label: str) -> float:
        match = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out)
        assert match, out
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50": ms("50"), "p99": ms("99"), "errors": float(errors.group(1)) if errors else 0.0}


def nginx_serving(body: bytes, port: int, workdir: Path) -> subprocess.Popen[bytes]:
    root = workdir / "www"
    root.mkdir()
    (root / "article.html").write_bytes(body)
    for readable in (workdir, root, root / "article.html"):  # nginx workers drop root privileges
        readable.chmod(0o755)
    conf = workdir / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  default_type text/html;
  sendfile on;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(workdir)])


async def publish_seed(stack: ServiceStack) -> str:
    draft = json.loads((REPO / "tests/fixtures/seed_draft.json").read_text())
    producer = AIOKafkaProducer(bootstrap_servers=KAFKA)
    await producer.start()
    try:
        await producer.send_and_wait(stack.topic("newsroom.drafts"), json.dumps(draft).encode(),
                                     key=draft["guid"].encode())
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        for _ in range(100):
            answer = await client.get(f"/a/{draft['guid']}")
            if answer.status_code == 301:
                return str(answer.headers["location"])
            await asyncio.sleep(0.1)
    raise RuntimeError("the seed article never reached its page")


def main(seconds: int, connections: int) -> None:
    workdir = Path(tempfile.mkdtemp())
    run = f"s{os.getpid()}"
    stack = ServiceStack(kafka=KAFKA, redis=REDIS, prefix=f"{run}.", namespace=run,
                         ports={k: free_port() for k in ("ingest", "publisher", "comments", "related")},
                         log_dir=workdir)
    asyncio.run(stack.create_topics())
    stack.start("ingest")
    stack.start("publisher")
    nginx = None
    try:
        stack.wait_ready(services=("ingest", "publisher"))
        path = asyncio.run(publish_seed(stack))
        body = httpx.get(stack.url("publisher", path)).content
        nginx_port = free_port()
        nginx = nginx_serving(body, nginx_port, workdir)
        time.sleep(0.5)
        served = httpx.get(f"http://127.0.0.1:{nginx_port}/article.html")
        assert served.content == body, (served.status_code, served.text[:200])
        stack.stop("ingest")
        wrk(stack.url("publisher", path), 2, connections)  # warm-up
        publisher = wrk(stack.url("publisher", path), seconds, connections)
        wrk(f"http://127.0.0.1:{nginx_port}/article.html", 2, connections)
        reference = wrk(f"http://127.0.0.1:{nginx_port}/article.html", seconds, connections)
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait()
        stack.stop_all()
        asyncio.run(stack.delete_topics())
        asyncio.run(stack.delete_keys())
    print(f"page: {path} ({len(body)} bytes), {connections} connections, {seconds} s, wrk -t1")
    print(f"{'server':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}")
    for name, r in (("publisher (1 worker)", publisher), ("nginx (1 worker)", reference)):
        print(f"{name:<24}{r['rps']:>10.0f}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['errors']:>8.0f}")
    print(f"ratio publisher/nginx: {publisher['rps'] / reference['rps']:.2f}  (target >= 0.5; p99 target <= 5 ms)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    main(args.seconds, args.connections)
