"""Credentials and limits: tokens are required, the comment form's token and honeypot are enforced, floods and
oversized bodies are refused — and no secret ever appears in a log line of any service.

The services of the suite run with distinctive secrets (see `infra.Secrets`) and a Redis password in REDIS_URL;
the last test reads every log line every service instance wrote during the whole chaos session (faults, bad
input, fuzzing included) and looks for each of them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from services.publisher.comment_edge import form_token
from tests.chaos.harness import reader_ip
from tests.chaos.infra import Secrets
from tests.support.drafts import make_draft, wait_for_version
from tests.support.stack import ServiceStack


@pytest.fixture(scope="module")
async def article(chaos_stack: ServiceStack) -> str:
    """A recent article (comments are open) on the suite's stack."""
    draft = make_draft(f"sec-{uuid.uuid4().hex[:8]}", published=datetime.now(UTC) - timedelta(hours=1))
    producer = AIOKafkaProducer(bootstrap_servers=chaos_stack.kafka, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(chaos_stack.topic("newsroom.drafts"), json.dumps(draft).encode(),
                                     key=draft["guid"].encode())
    finally:
        await producer.stop()
    await wait_for_version(chaos_stack, draft["guid"], 1, timeout=60)
    return str(draft["guid"])


def client(stack: ServiceStack, service: str, ip: str | None = None, **kwargs: Any) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=ip or reader_ip())
    return httpx.AsyncClient(base_url=stack.url(service), timeout=30, transport=transport, **kwargs)


async def test_gateway_and_moderation_api_refuse_missing_or_wrong_tokens(
    chaos_stack: ServiceStack, chaos_secrets: Secrets
) -> None:
    draft = json.dumps(make_draft()).encode()
    wrong = ("", "Bearer", "Bearer wrong-token", f"Basic {chaos_secrets.ingest_token}",
             f"Bearer {chaos_secrets.moderation_token}", f"Bearer {chaos_secrets.ingest_token}x",
             f"Bearer {chaos_secrets.ingest_token[:-1]}")
    async with client(chaos_stack, "ingest") as ingest:
        for header in wrong:
            headers = {"authorization": header} if header else {}
            response = await ingest.post("/drafts", content=draft, headers=headers)
            assert response.status_code == 401, (header, response.status_code)
        for signature in (None, "", "sha1=00", f"sha1={chaos_secrets.push_key}"):
            headers = {} if signature is None else {"x-superdesk-signature": signature}
            response = await ingest.post("/push", content=draft, headers=headers)
            assert response.status_code == 403, (signature, response.status_code)
        auth = {"authorization": f"Bearer {chaos_secrets.ingest_token}"}
        ok = await ingest.post("/drafts", content=draft, headers=auth)
        assert ok.status_code == 202, ok.text

    routes = [("GET", "/moderation/comments?status=pending"), ("GET", "/moderation/comments/c123"),
              ("POST", "/moderation/comments/c123/approve"), ("POST", "/moderation/bans"),
              ("POST", "/moderation/comments/bulk"), ("GET", "/moderation/articles/x")]
    wrong_moderation = tuple(h.replace(chaos_secrets.moderation_token, chaos_secrets.ingest_token) for h in wrong)
    async with client(chaos_stack, "comments") as comments:
        for method, path in routes:
            for header in wrong_moderation:
                headers = {"authorization": header} if header else {}
                response = await comments.request(method, path, headers=headers, json={"ip": "10.0.0.1"})
                assert response.status_code == 401, (method, path, header, response.status_code)


async def test_comment_form_token_and_honeypot_are_enforced(
    chaos_stack: ServiceStack, chaos_secrets: Secrets, article: str
) -> None:
    def form(**override: str) -> dict[str, str]:
        return {"comment_post_ID": article, "comment_parent": "0", "author": "Ann Reader",
                "email": f"a{uuid.uuid4().hex[:8]}@example.org", "url": "", "comment": f"Fair point {uuid.uuid4()}",
                "website_url": "", "form_token": form_token(chaos_secrets.form_secret, article), **override}

    cases = {
        "invalid_token": form(form_token="0" * 32),
        "missing token": form(form_token=""),
        "token of another article": form(form_token=form_token(chaos_secrets.form_secret, article + "x")),
        "token with another secret": form(form_token=form_token("not-the-secret", article)),
        "honeypot": form(website_url="http://spam.example/"),
    }
    for name, data in cases.items():
        async with client(chaos_stack, "publisher") as publisher:
            response = await publisher.post("/comments", data=data)
        assert response.status_code == 400, (name, response.status_code)
        expected = "honeypot" if name == "honeypot" else "invalid_token"
        assert f'data-code="{expected}"' in response.text, name
    async with client(chaos_stack, "publisher") as publisher:
        accepted = await publisher.post("/comments", data=form())
    assert accepted.status_code == 303, accepted.text


async def test_flood_limits_answer_429(chaos_stack: ServiceStack, chaos_secrets: Secrets, article: str) -> None:
    token = form_token(chaos_secrets.form_secret, article)

    def form(email: str) -> dict[str, str]:
        return {"comment_post_ID": article, "comment_parent": "0", "author": "Flo Oder", "email": email,
                "url": "", "comment": f"Another thought {uuid.uuid4()}", "website_url": "", "form_token": token}

    same_author = f"f{uuid.uuid4().hex[:8]}@example.org"
    async with client(chaos_stack, "publisher") as first, client(chaos_stack, "publisher") as second:
        assert (await first.post("/comments", data=form(same_author))).status_code == 303
        per_author = await second.post("/comments", data=form(same_author))
    assert per_author.status_code == 429, "the same e-mail from another address was not limited"
    assert per_author.headers.get("retry-after")

    async with client(chaos_stack, "publisher") as reader:
        assert (await reader.post("/comments", data=form(f"g{uuid.uuid4().hex[:8]}@example.org"))).status_code == 303
        per_ip = await reader.post("/comments", data=form(f"h{uuid.uuid4().hex[:8]}@example.org"))
    assert per_ip.status_code == 429, "a second author from the same address was not limited"


async def test_oversized_bodies_answer_413(chaos_stack: ServiceStack, chaos_secrets: Secrets, article: str) -> None:
    auth_ingest = {"authorization": f"Bearer {chaos_secrets.ingest_token}"}
    auth_moderation = {"authorization": f"Bearer {chaos_secrets.moderation_token}"}
    huge_draft = json.dumps(make_draft(body="word " * 500_000)).encode()
    assert len(huge_draft) > 2 * 1024 * 1024
    async with client(chaos_stack, "ingest") as ingest:
        assert (await ingest.post("/drafts", content=huge_draft, headers=auth_ingest)).status_code == 413
        assert (await ingest.post("/drafts", content=b"x" * (3 * 1024 * 1024), headers=auth_ingest)).status_code == 413
    async with client(chaos_stack, "comments") as comments:
        response = await comments.post("/moderation/bans", content=b'{"ip": "' + b"1" * (2 * 1024 * 1024) + b'"}',
                                       headers={**auth_moderation, "content-type": "application/json"})
        assert response.status_code == 413
    async with client(chaos_stack, "publisher") as publisher:
        body = {"comment_post_ID": article, "author": "Big", "email": "big@example.org",
                "comment": "x" * (2 * 1024 * 1024), "form_token": form_token(chaos_secrets.form_secret, article)}
        response = await publisher.post("/comments", data=body)
        assert response.status_code == 413, response.status_code
        response = await publisher.post("/api/comments", json=body)
        assert response.status_code == 413, response.status_code


async def test_no_secret_in_any_log_line(chaos_stack: ServiceStack, chaos_secrets: Secrets) -> None:
    # requests that fail on credentials (the paths most likely to log what they were given)
    async with client(chaos_stack, "ingest") as ingest:
        await ingest.post("/drafts", content=b"{}", headers={"authorization": f"Bearer {chaos_secrets.ingest_token}"})
        await ingest.post("/push", content=b"{}", headers={"x-superdesk-signature": f"sha1={chaos_secrets.push_key}"})
    async with client(chaos_stack, "comments") as comments:
        auth = {"authorization": f"Bearer {chaos_secrets.moderation_token}"}
        await comments.get("/moderation/comments", headers=auth)
    await asyncio.sleep(1)
    values = chaos_secrets.values()
    values["REDIS_URL"] = chaos_stack.redis
    found: list[str] = []
    files = sorted(chaos_stack.log_dir.glob("*.log"))
    assert files, "no service logs to search"
    lines = 0
    for path in files:
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            lines += 1
            for name, value in values.items():
                if value in line:
                    found.append(f"{path.name}:{number}: {name} in {line[:300]}")
    print(f"searched {lines} log lines in {len(files)} files for {len(values)} secrets")
    assert lines > 20
    assert not found, "\n".join(found[:20])
