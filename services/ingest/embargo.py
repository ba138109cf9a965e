"""Releases embargoed stories at their instant, without reader traffic and across restarts.

The schedule lives in Redis (a sorted set of held guids by instant), so any ingest replica can release a story
and a restarted one picks up where the last stopped. A claimed release carries a lease: if the replica dies
mid-release, the story becomes due again when the lease runs out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from faststream.kafka import KafkaBroker

from services.ingest.ingestor import Ingestor
from services.ingest.intake import decode_draft
from services.ingest.state import IngestStore
from shared.kafka import TRANSIENT_ERRORS, Outbox, Reject
from shared.logging import get_logger
from shared.service import cancel_and_wait

log = get_logger(__name__)


class EmbargoReleaser:
    def __init__(
        self, store: IngestStore, ingestor: Ingestor, broker: KafkaBroker, *,
        poll_seconds: float, lease_seconds: float, max_bytes: int,
        ensure_state: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self.ingestor = ingestor
        self.broker = broker
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.max_bytes = max_bytes
        self.ensure_state = ensure_state
        """Rebuilds ingest's Redis state from the log when it is gone (a Redis restarted empty): the schedule is
        part of it, and a quiet night brings no draft whose batch would rebuild it in time."""
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="embargo-releaser")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    async def _run(self) -> None:
        while True:
            try:
                await self.release_due()
            except asyncio.CancelledError:
                raise
            except TRANSIENT_ERRORS as exc:
                log.warning("embargo check failed; will retry", error=repr(exc))
            except Exception:
                log.exception("embargo check failed")
            await asyncio.sleep(self.poll_seconds)

    async def release_due(self) -> int:
        if self.ensure_state is not None:
            await self.ensure_state()
        released = 0
        for guid in await self.store.claim_due(time.time(), self.lease_seconds):
            held = await self.store.held(guid)
            if held is None:
                continue
            version, raw, headers = held
            outbox = Outbox(self.broker)
            try:
                draft = decode_draft(raw, key=guid.encode(), max_bytes=self.max_bytes)
                outcome = await self.ingestor.ingest(draft, raw, headers, outbox, releasing=True)
                await outbox.flush()
            except Reject as exc:
                log.error("held draft could not be released", guid=guid, reason=exc.reason)
                outcome = "rejected"
            await self.store.finish_release(guid, version)
            log.info("embargo lifted", guid=guid, version=version, outcome=outcome, receipt=headers.get("receipt"))
            released += 1
        return released
