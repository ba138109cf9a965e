"""Realistic ninjs drafts for end-to-end tests, and a way to wait for their pages."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from tests.support.stack import ServiceStack

HARBOUR = (
    "Dock workers at the northern harbour walked out on Monday after talks over night-shift pay collapsed. "
    "The strike halted container cranes and left dozens of cargo ships waiting at anchor outside the port. "
    "Union leaders said the harbour authority had refused to discuss overtime rates for crane operators. "
    "Shipping companies warned that the port closure would delay deliveries of fuel and grain across the region. "
    "The harbour authority said it remained open to talks with the dockers' union about pay and shifts."
)
ELECTION = (
    "Voters in the capital queued for hours on Sunday as the presidential election went to a second round. "
    "Polling stations stayed open late after turnout exceeded forecasts in several districts of the city. "
    "Both candidates promised to respect the result of the ballot count expected on Monday night. "
    "Election observers reported long queues but few irregularities at polling stations across the country."
)


def make_draft(
    guid: str | None = None,
    *,
    version: int = 1,
    headline: str | None = None,
    body: str = HARBOUR,
    section: tuple[str, str] = ("business", "Business"),
    published: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    guid = guid or f"e2e-{uuid.uuid4().hex[:12]}"
    moment = (published or datetime(2024, 3, 20, 9, 30, tzinfo=UTC)).astimezone(UTC)
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    paragraphs = "".join(f"<p>{sentence.strip()}.</p>" for sentence in body.split(". ") if sentence.strip())
    draft: dict[str, Any] = {
        "guid": guid,
        "version": version,
        "type": "text",
        "pubstatus": "usable",
        "headline": headline or f"Dockers strike over night-shift pay {guid[-6:]}",
        "body_html": paragraphs,
        "service": [{"code": section[0], "name": section[1]}],
        "subject": [{"code": "strike", "name": "Strike"}],
        "authors": [{"name": "Jane Doe", "role": "writer", "biography": "Jane covers ports and shipping."}],
        "firstcreated": stamp,
        "versioncreated": (moment + timedelta(minutes=version)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "language": "en",
    }
    draft.update(extra)
    return draft


async def post(producer: AIOKafkaProducer, stack: ServiceStack, draft: dict[str, Any]) -> None:
    await producer.send_and_wait(
        stack.topic("newsroom.drafts"), json.dumps(draft).encode(), key=str(draft["guid"]).encode()
    )


async def page_of(stack: ServiceStack, guid: str) -> tuple[int, str, str]:
    """(status, final URL path, body) of `/a/{guid}` followed once."""
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        first = await client.get(f"/a/{guid}")
        if first.status_code != 301:
            return first.status_code, "", first.text
        location = first.headers["location"]
        page = await client.get(location)
        return page.status_code, location, page.text


async def wait_for_version(stack: ServiceStack, guid: str, version: int, timeout: float = 10) -> tuple[str, str]:
    marker = f'<meta name="broadsheet:version" content="{version}">'

    async def check() -> tuple[str, str] | None:
        status, path, body = await page_of(stack, guid)
        return (path, body) if status == 200 and marker in body else None

    found = await stack.wait_for(check, timeout=timeout)
    assert found, f"{guid} v{version} did not reach its page in {timeout}s"
    return found  # type: ignore[no-any-return]


async def get(stack: ServiceStack, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url("publisher")) as client:
        return await client.get(path, **kwargs)
