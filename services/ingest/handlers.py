"""Ingest's subscriber: drafts from `newsroom.drafts` become article events (see `ingestor.py`)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiokafka import ConsumerRecord

from services.ingest.config import IngestSettings
from services.ingest.ingestor import Ingestor
from services.ingest.intake import decode_draft
from services.ingest.recovery import StateRecovery
from shared import topics
from shared.contracts import NinjsDraft
from shared.kafka import BatchRunner, Outbox, Reject, record_headers, subscribe, topic_name
from shared.logging import get_logger, log_context, new_trace_id

SERVICE = "ingest"
PREPARE_MAX_BYTES = 256 * 1024


def journey_headers(record: ConsumerRecord[Any, Any]) -> dict[str, str]:
    """Receipt and trace ids follow the story to its page; drafts posted straight to Kafka get them here."""
    incoming = record_headers(record)
    receipt = incoming.get("receipt") or f"k-{record.partition}-{record.offset}"
    received_at = incoming.get("received-at") or f"{record.timestamp / 1000 if record.timestamp else time.time():.6f}"
    return {
        "receipt": receipt,
        "trace-id": incoming.get("trace-id") or new_trace_id(),
        "received-at": received_at,
        "draft-partition": str(record.partition),
        "draft-offset": str(record.offset),
    }


def register(settings: IngestSettings, ingestor: Ingestor, runner: BatchRunner, recovery: StateRecovery) -> None:
    log = get_logger(__name__)

    async def prepare(records: Sequence[ConsumerRecord[Any, Any]], outbox: Outbox) -> None:
        """Everything a batch needs from Redis, read at once: story state, and the URLs new stories claim."""
        await recovery.ensure()  # versions, URLs and kills must be known before any draft is decided
        decoded: dict[tuple[int, int], NinjsDraft | Reject] = {}
        for record in records:
            if record.value is not None and len(record.value) > PREPARE_MAX_BYTES:
                continue  # decoded in its turn: a huge record must not delay the drafts ahead of it
            try:
                decoded[record.partition, record.offset] = decode_draft(
                    record.value, key=record.key, max_bytes=settings.max_draft_bytes
                )
            except Reject as exc:
                decoded[record.partition, record.offset] = exc
            except Exception:  # noqa: S112 - decoded again in its turn, where a failure is this record's alone
                continue
        outbox.scratch["decoded"] = decoded
        drafts = [d for d in decoded.values() if isinstance(d, NinjsDraft)]
        await ingestor.prefetch([d.guid for d in drafts], outbox)
        await ingestor.preclaim(drafts, outbox)

    def decoded_draft(record: ConsumerRecord[Any, Any], outbox: Outbox) -> NinjsDraft:
        decoded: dict[tuple[int, int], NinjsDraft | Reject] = outbox.scratch.get("decoded", {})
        found = decoded.pop((record.partition, record.offset), None)
        if found is None:  # a retry of the record: decode it again
            return decode_draft(record.value, key=record.key, max_bytes=settings.max_draft_bytes)
        if isinstance(found, Reject):
            raise found
        return found

    async def on_draft(record: ConsumerRecord[Any, Any], outbox: Outbox) -> str:
        headers = journey_headers(record)
        draft = decoded_draft(record, outbox)  # a Reject is dead-lettered by the runner
        with log_context(receipt=headers["receipt"], trace_id=headers["trace-id"], guid=draft.guid):
            outcome = await ingestor.ingest(draft, record.value, headers, outbox)
            log.info("draft ingested", version=draft.version, pubstatus=draft.pubstatus, outcome=outcome)
            return outcome

    subscribe(
        runner, {topic_name(settings, topics.DRAFTS): on_draft}, prepare=prepare,
        description="ninjs drafts from newsroom systems, validated, sanitized and turned into article events.",
    )
