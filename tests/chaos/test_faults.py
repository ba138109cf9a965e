"""Faults while a seeded workload runs, then the whole site checked against the reference model.

Each fault gets its own stories (its own guid prefix) on the suite's private Kafka and Redis:
SIGKILL of each service (then restarted), SIGSTOP of a replica past the group session timeout (a second replica
takes its partitions; the stale one, resumed, must not overwrite newer pages), kill -9 of the broker (while it is
down, readers still get their pages and posts a prompt 503), Redis flushed (FLUSHALL) or restarted empty, and a
rolling restart of every service. The short profile runs a subset; the long one (`make chaos`) the whole matrix,
and writes docs/chaos-report.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import time
import uuid
import zlib
from typing import Any

import httpx
import pytest

from tests.chaos.harness import (
    Fault,
    History,
    Profile,
    Verdict,
    Workload,
    canary,
    check_log,
    check_site,
    eventually,
    plan_stories,
    profile_named,
    wait_lag_zero,
)
from tests.chaos.infra import PrivateInfra, Secrets
from tests.support.drafts import make_draft
from tests.support.stack import SERVICES, ServiceStack, free_port


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fault" in metafunc.fixturenames:
        profile = profile_named(str(metafunc.config.getoption("--chaos-profile", default="short")))
        metafunc.parametrize("fault", profile.faults, ids=[f.id for f in profile.faults])


def alive(stack: ServiceStack) -> dict[str, list[int]]:
    """pid of every running instance; raises when one has exited."""
    pids: dict[str, list[int]] = {}
    for service, procs in stack.processes.items():
        for proc in procs:
            assert proc.poll() is None, f"{service} (pid {proc.pid}) exited with {proc.returncode}"
            pids.setdefault(service, []).append(proc.pid)
    return pids


async def wait_ready(stack: ServiceStack, service: str) -> None:
    await asyncio.to_thread(stack.wait_ready, 120, (service,))


async def restart(stack: ServiceStack, service: str, sig: int) -> None:
    """Signal the first instance of `service`, wait for it to exit, start it again and wait until ready."""
    proc = stack.processes[service][0]
    proc.send_signal(sig)
    try:
        await asyncio.to_thread(proc.wait, 40)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)
    stack.processes[service].remove(proc)
    replacement = stack.start(service)
    # keep instance 0 first: the other instances (if any) follow it
    stack.processes[service].remove(replacement)
    stack.processes[service].insert(0, replacement)
    await wait_ready(stack, service)


ARTICLE_LINK = re.compile(r'href="(/[a-z0-9-]+/\d{4}/\d{2}/\d{2}/[^"]+)"')


async def an_article_page(stack: ServiceStack, within: float = 30) -> str:
    """The path of an article the home page links to and whose page answers 200. The home page is rendered
    off the consumers' path, so on a busy machine it may trail the first stories by a few seconds."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:
        while True:
            for path in ARTICLE_LINK.findall((await client.get("/")).text):
                if (await client.get(path)).status_code == 200:
                    return str(path)
            if time.monotonic() > deadline:
                raise AssertionError(f"the home page links to no article after {within:g} s")
            await asyncio.sleep(0.5)


async def served_without_kafka(stack: ServiceStack, article: str) -> None:
    """With the broker down, readers still get their pages from Redis, and the readiness the load balancer asks
    (`/readyz/readers`) says so, while `/readyz` reports Kafka unreachable."""
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:
        deadline = time.monotonic() + 20
        full = await client.get("/readyz")
        while full.status_code != 503 and time.monotonic() < deadline:  # until the client notices
            await asyncio.sleep(0.5)
            full = await client.get("/readyz")
        assert full.status_code == 503 and "not ready" in full.json()["checks"]["kafka"], full.text
        readers = await client.get("/readyz/readers")
        assert readers.status_code == 200, readers.text
        assert (await client.get("/")).status_code == 200
        assert (await client.get(article)).status_code == 200, article


async def posts_refused_without_kafka(stack: ServiceStack, article: str) -> None:
    """With the broker down, a newsroom's draft, a reader's comment and a reader's report get a 503 in bounded
    time (the ingest gateway adds Retry-After), not a 500 or a wait for the producer's own 30 s timeout."""
    draft = make_draft(f"broker-down-{uuid.uuid4().hex[:6]}")
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=60) as client:
        token = stack.env("ingest")["INGEST_TOKEN"]
        answer = await client.post("/drafts", json=draft, headers={"authorization": f"Bearer {token}"})
    assert answer.status_code == 503, answer.text
    assert answer.json()["reason_code"] == "unavailable" and int(answer.headers["retry-after"]) > 0
    assert time.monotonic() - started < 15

    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=60) as client:
        guid = re.search(r'name="comment_post_ID" value="([^"]+)"', (await client.get(article)).text)
        assert guid is not None, article
        comment = {"comment_post_ID": guid.group(1), "author": "Reader", "email": "reader@example.org",
                   "comment": f"Posted while the broker is down {uuid.uuid4().hex[:6]}"}
        started = time.monotonic()
        answer = await client.post("/api/comments", json=comment)
        assert answer.status_code == 503, answer.text
        assert answer.json()["errors"][0]["code"] == "unavailable"
        assert time.monotonic() - started < 15

        started = time.monotonic()  # a report without its article is produced unchecked: it meets the broker
        answer = await client.post(f"/comments/broker-down-{uuid.uuid4().hex[:6]}/report", json={})
        assert answer.status_code == 503, answer.text
        assert answer.json()["errors"][0]["code"] == "unavailable"
        assert time.monotonic() - started < 15


async def answers_while_redis_hangs(stack: ServiceStack, article: str) -> None:
    """With Redis frozen (SIGSTOP: connections stay open, nothing answers), every answer still comes promptly:
    probes say not ready within their 2 s bound, readers get a 503 page once the page cache has stopped trusting
    what it holds, and the APIs a 503 at their 10 s deadline, not after a minute of socket timeouts."""
    async with httpx.AsyncClient(timeout=60) as client:
        for service in SERVICES:
            started = time.monotonic()
            ready = await client.get(stack.url(service, "/readyz"))
            assert ready.status_code == 503 and "not ready" in ready.json()["checks"]["redis"], (service, ready.text)
            assert time.monotonic() - started < 4, service
        await asyncio.sleep(2)  # the invalidation channel's heartbeat gives up after 1.5 s
        started = time.monotonic()
        page = await client.get(stack.url("publisher", article))
        assert page.status_code == 503 and page.headers["retry-after"] == "5", page.status_code
        assert time.monotonic() - started < 4
        started = time.monotonic()
        queue = await client.get(stack.url("comments", "/moderation/comments"),
                                 headers={"authorization": f"Bearer {stack.env('comments')['MODERATION_TOKEN']}"})
        assert queue.status_code == 503, queue.text
        assert time.monotonic() - started < 13


async def inject(
    fault: Fault, stack: ServiceStack, infra: PrivateInfra, workload: Workload, profile: Profile, n: int
) -> float:
    """Apply the fault once; returns the seconds until a draft produced at the fault reached its page."""
    probe = asyncio.create_task(canary(stack, workload, f"{fault.id}-{n}"))
    if fault.kind == "sigkill":
        await restart(stack, fault.target, signal.SIGKILL)
    elif fault.kind == "sigstop":
        proc = stack.processes[fault.target][0]
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(profile.session_timeout + 6)
        finally:
            os.kill(proc.pid, signal.SIGCONT)
    elif fault.kind == "broker-kill":
        article = await an_article_page(stack)
        await asyncio.to_thread(infra.kill_kafka)
        try:
            await asyncio.gather(served_without_kafka(stack, article), posts_refused_without_kafka(stack, article))
        finally:
            await asyncio.to_thread(infra.start_kafka)
    elif fault.kind == "redis-flushall":
        await asyncio.to_thread(infra.flushall)
    elif fault.kind == "redis-restart":
        await asyncio.to_thread(infra.restart_redis)
    elif fault.kind == "redis-freeze":
        article = await an_article_page(stack)
        pid = int(infra.redis_pidfile().read_text().strip())
        os.kill(pid, signal.SIGSTOP)
        try:
            await answers_while_redis_hangs(stack, article)
        finally:
            os.kill(pid, signal.SIGCONT)
    elif fault.kind == "rolling-restart":
        for service in SERVICES:
            await restart(stack, service, signal.SIGTERM)
    else:  # pragma: no cover
        raise ValueError(fault.kind)
    return await probe


async def final_moderation(workload: Workload, within: float = 60) -> None:
    """Once the load is over: wait until moderation knows every acknowledged real comment, approve them."""
    deadline = time.monotonic() + within
    async with workload.moderation_client() as client:
        while time.monotonic() < deadline:
            unknown = []
            for cid in sorted(workload.real_ids - workload.approved):
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"/moderation/comments/{cid}")
                    if response.status_code == 200:
                        continue
                unknown.append(cid)
            with contextlib.suppress(httpx.HTTPError, ValueError):
                await workload.approve_pending(client)
            if not unknown:
                return
            await asyncio.sleep(1)


async def test_fault(
    fault: Fault,
    chaos_stack: ServiceStack,
    private_infra: PrivateInfra,
    chaos_secrets: Secrets,
    chaos_profile: Profile,
    chaos_results: list[dict[str, Any]],
    tmp_path: Any,
) -> None:
    stack = chaos_stack
    run = f"{fault.id}-{uuid.uuid4().hex[:4]}"
    seed = zlib.crc32(fault.id.encode())
    extra: subprocess.Popen[bytes] | None = None
    ports = [stack.ports["publisher"]]
    if fault.kind == "sigstop":
        # a second replica to take over the partitions of the stopped one
        stack.ports[f"{fault.target}-1"] = free_port()
        extra = stack.start(fault.target, 1)
        await asyncio.to_thread(_wait_instance, stack, fault.target, 1)
        if fault.target == "publisher":
            ports.append(stack.ports["publisher-1"])
    before = alive(stack)
    workload = Workload(
        stack, History(), plan_stories(run, chaos_profile.stories, seed), fault.duration, chaos_profile.comments,
        form_secret=chaos_secrets.form_secret, moderation_token=chaos_secrets.moderation_token, seed=seed,
        publisher_ports=ports,
    )
    started = time.monotonic()
    recovery: list[float] = []
    await workload.start()
    try:
        for n, point in enumerate(fault.points):
            await workload.wait_progress(point)
            recovery.append(await inject(fault, stack, private_infra, workload, chaos_profile, n))
        await workload.finish(within=180)
    finally:
        await workload.stop()
        workload.history.dump(tmp_path / "history.json")
    await final_moderation(workload)
    drain = await wait_lag_zero(stack, 180)
    site = await eventually(lambda: check_site(stack, workload), within=90)
    log = await check_log(stack, set(workload.guids))
    if extra is not None:
        extra.send_signal(signal.SIGTERM)
        await asyncio.to_thread(extra.wait, 40)
        stack.processes[fault.target].remove(extra)
    after = alive(stack)
    restarted = {s for s in before if before[s] != after.get(s)}
    expected_restarts = set(SERVICES) if fault.kind == "rolling-restart" else {fault.target}
    unexpected = sorted(restarted - expected_restarts - {fault.target})

    redelivered = duplicate_drafts_seen(stack, set(workload.guids))
    verdict = Verdict(site.lost + log.lost, site.duplicated + log.duplicated, site.differing + log.differing,
                      {**site.notes, **log.notes})
    counts = workload.history.counts()
    chaos_results.append({
        "profile": chaos_profile.name, "fault": fault.kind, "target": fault.target, "injections": len(fault.points),
        "drafts": sum(v for k, v in counts.items() if k.startswith("draft:")),
        "drafts_acked": counts.get("draft:acked", 0), "drafts_unknown": counts.get("draft:unknown", 0),
        "comments_acked": counts.get("comment:acked", 0), "approved": len(workload.approved),
        "lost": len(verdict.lost), "duplicated_effects": len(verdict.duplicated),
        "differing": len(verdict.differing),
        "duplicated_processing": log.notes.get("duplicated_processing", 0) + redelivered,
        "recovery_s": round(max(recovery), 1) if recovery else None, "drain_s": round(drain, 1),
        "seconds": round(time.monotonic() - started, 1), "details": verdict.summary(),
    })
    print({k: v for k, v in chaos_results[-1].items() if k != "details"})
    assert not unexpected, f"services restarted although the fault did not touch them: {unexpected}"
    assert verdict.ok, verdict.summary()
    assert all(r != float("inf") for r in recovery), f"a draft produced at the fault never got through: {recovery}"
    if fault.kind == "sigkill":
        # Every replica runs with an INSTANCE_ID, as deploy/k8s sets it: the restarted process takes its
        # partitions straight back instead of the group waiting out the killed member's session.
        assert max(recovery) < chaos_profile.session_timeout / 2, f"recovery after a kill took {recovery} s"


def duplicate_drafts_seen(stack: ServiceStack, guids: set[str]) -> int:
    """Drafts of these stories that ingest received again after it had processed them (a batch redelivered
    after a crash): duplicated processing without a duplicated effect."""
    count = 0
    for path in stack.log_dir.glob("ingest-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            if "duplicate draft ignored" in line and any(g in line for g in guids):
                count += 1
    return count


def _wait_instance(stack: ServiceStack, service: str, instance: int, within: float = 120) -> None:
    url = f"http://127.0.0.1:{stack.ports[f'{service}-{instance}']}/readyz"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.3)
    raise TimeoutError(f"{service}-{instance} not ready in {within}s")


async def test_publisher_starts_before_the_broker_can_coordinate_groups(
    private_infra: PrivateInfra, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A broker that was just created (or restarted) answers metadata before its group coordinator is available
    (`__consumer_offsets` is created on first use, then loaded). A publisher started at that moment must wait
    for it, as the consumers do, rather than exit."""
    fresh = PrivateInfra(run_dir=tmp_path_factory.mktemp("fresh-broker"), kafka_port=free_port(),
                         controller_port=free_port(), redis_port=private_infra.redis_port,
                         password=private_infra.password)
    await asyncio.to_thread(fresh.start_kafka)
    run = uuid.uuid4().hex[:8]
    stack = ServiceStack(
        kafka=fresh.kafka, redis=private_infra.redis_url, prefix=f"f{run}.", namespace=f"f{run}",
        ports={name: free_port() for name in SERVICES}, log_dir=tmp_path_factory.mktemp("fresh-broker-logs"),
    )
    try:
        await stack.create_topics()
        stack.start("publisher")
        await asyncio.to_thread(stack.wait_ready, 90, ("publisher",))
    finally:
        stack.stop_all()
        await asyncio.to_thread(fresh.stop_kafka)
