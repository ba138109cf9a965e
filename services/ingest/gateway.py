"""The HTTP gateway for newsroom systems that post rather than produce: `POST /drafts` (bearer token) and
`POST /push` (Superdesk HTTP Push, HMAC-SHA1 signed).

An accepted draft is produced to `newsroom.drafts` like any other and acknowledged by Kafka before the answer,
so 202 means durable; the receipt id in the answer follows the story through every log line to its page.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
import uuid

from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from services.ingest.config import IngestSettings
from services.ingest.domain import event_version, unpublishable_reason
from services.ingest.intake import decode_draft
from shared import topics
from shared.http import Request, Response, Router, json_response, problem
from shared.kafka import Reject, publish_from_edge, topic_name
from shared.logging import get_logger, new_trace_id

log = get_logger(__name__)
RETRY_AFTER_SECONDS = 5


def bearer_ok(request: Request, token: str) -> bool:
    header = request.header("authorization")
    scheme, _, supplied = header.partition(" ")
    # compare_digest on bytes of both values: the time taken does not reveal how much of the token matched
    return scheme.lower() == "bearer" and hmac.compare_digest(supplied.strip().encode(), token.encode())


def superdesk_signature_ok(body: bytes, header: str, key: str) -> bool:
    """Superdesk writes the digest in lower-case hex; a proxy or another sender may not (hex has no case)."""
    expected = "sha1=" + hmac.new(key.encode(), body, hashlib.sha1).hexdigest()
    return hmac.compare_digest(header.strip().lower().encode(), expected.encode())


class Gateway:
    def __init__(self, settings: IngestSettings, broker: KafkaBroker) -> None:
        self.settings = settings
        self.broker = broker
        self.topic = topic_name(settings, topics.DRAFTS)

    def install(self, router: Router) -> None:
        router.add(["POST"], "/drafts", self.post_draft)
        router.add(["POST"], "/push", self.superdesk_push)

    async def post_draft(self, request: Request) -> Response:
        if not bearer_ok(request, self.settings.ingest_token.get_secret_value()):
            return problem(401, "missing or invalid bearer token")
        return await self._accept(request.body, accepted_status=202)

    async def superdesk_push(self, request: Request) -> Response:
        signature = request.header("x-superdesk-signature")
        if not signature or not superdesk_signature_ok(
            request.body, signature, self.settings.superdesk_push_key.get_secret_value()
        ):
            return problem(403, "missing or invalid x-superdesk-signature")
        return await self._accept(request.body, accepted_status=201)

    async def _accept(self, body: bytes, *, accepted_status: int) -> Response:
        # Decoding and sanitizing a 2 MB draft takes a good part of a second: in a thread, so that the gateway's
        # other requests (and its probes) are answered meanwhile.
        try:
            draft = await asyncio.to_thread(
                decode_draft, body, key=None, max_bytes=self.settings.max_draft_bytes, require_key=False
            )
        except Reject as exc:
            status = 413 if exc.reason_code == "too_large" else 422
            return problem(status, exc.reason, reason_code=exc.reason_code, errors=exc.errors)
        missing = await asyncio.to_thread(unpublishable_reason, draft) if draft.pubstatus == "usable" else None
        if missing is not None:
            field, why = missing
            errors = [{"loc": [field], "msg": why, "type": "unpublishable"}]
            return problem(422, why, reason_code="unpublishable", errors=errors)
        receipt = uuid.uuid4().hex
        headers = {
            "content-type": "application/json",
            "receipt": receipt,
            "trace-id": new_trace_id(),
            "received-at": f"{time.time():.6f}",
        }
        try:
            await publish_from_edge(self.broker, body, topic=self.topic, key=draft.guid.encode(), headers=headers)
        except (KafkaError, TimeoutError) as exc:
            log.warning("draft not accepted: Kafka did not acknowledge it", guid=draft.guid, error=repr(exc))
            retry_after = [(b"retry-after", str(RETRY_AFTER_SECONDS).encode())]
            reason = "the draft could not be stored now; send it again"
            return problem(503, reason, retry_after, reason_code="unavailable")
        log.info("draft accepted over HTTP", guid=draft.guid, version=draft.version, receipt=receipt)
        # The version the story goes by: the newsroom's, else versioncreated in epoch milliseconds.
        version = event_version(draft)
        return json_response({"guid": draft.guid, "version": version, "receipt": receipt}, accepted_status)
