"""The comment edge on the running publisher (real Kafka and Redis): another site's page cannot post through its
visitors' browsers, a closed article's form is not offered again, and the Reply link works without JavaScript."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from tests.support.drafts import make_draft, post, wait_for_version
from tests.support.stack import ServiceStack

pytestmark = pytest.mark.e2e

EVIL = "https://evil.example"


async def published_article(stack: ServiceStack, producer: AIOKafkaProducer, published: datetime) -> tuple[str, str]:
    draft = make_draft(published=published)
    await post(producer, stack, draft)
    path, _ = await wait_for_version(stack, draft["guid"], 1)
    return draft["guid"], path


async def test_posts_from_another_sites_page_are_refused_on_every_route(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    guid, _ = await published_article(stack, producer, datetime.now(UTC) - timedelta(hours=1))
    comment = json.dumps({"comment_post_ID": guid, "author": "V", "email": "v@example.org", "comment": "hi"})
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:
        forged = await client.post("/api/comments", content=comment,
                                   headers={"origin": EVIL, "content-type": "text/plain"})
        assert forged.status_code == 403, forged.text
        plain = await client.post("/api/comments", content=comment, headers={"content-type": "text/plain"})
        assert plain.status_code == 415, plain.text
        for content_type in ("text/plain;charset=json", "application/json"):
            report = await client.post("/comments/c0123/report", content=json.dumps({"comment_post_ID": guid}),
                                       headers={"origin": EVIL, "content-type": content_type})
            assert report.status_code == 403, (content_type, report.text)


async def test_a_closed_articles_form_is_not_offered_again_and_replies_need_no_script(
    stack: ServiceStack, producer: AIOKafkaProducer
) -> None:
    guid, path = await published_article(stack, producer, datetime.now(UTC) - timedelta(days=20))
    async with httpx.AsyncClient(base_url=stack.url("publisher"), timeout=10) as client:
        article = (await client.get(path)).text
        token = re.search(r'name="form_token" value="([^"]+)"', article)
        assert token is not None
        form = {"comment_post_ID": guid, "comment_parent": "0", "author": "Late", "email": "late@example.org",
                "comment": "After the close.", "website_url": "", "form_token": token.group(1)}
        closed = await client.post("/comments", data=form)
        assert closed.status_code == 403
        assert "Comments on this article are closed." in closed.text
        assert "<form" not in closed.text and "After the close." in closed.text
        assert f'<a href="{path}">Back to the article</a>' in closed.text

        reply = await client.get(f"/comments/c0123/reply?{urlencode({'comment_post_ID': guid})}")
        assert reply.status_code == 403 and "<form" not in reply.text
        assert reply.headers["content-type"].startswith("text/html")
