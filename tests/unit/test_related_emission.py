"""The related worker's emission: links Kafka did not acknowledge are sent again, and only acknowledged ones
count as emitted (a replica that counted them would never send them again)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from services.related import worker as worker_module
from services.related.config import RelatedSettings
from services.related.worker import RelatedWorker
from tests.unit.test_related_engine import archive


class FlakyOutbox:
    """An outbox whose first `failures` flushes time out, as when a broker restart leaves a record unacknowledged."""

    failures = 1
    flushed: ClassVar[list[list[str]]] = []

    def __init__(self, broker: Any) -> None:
        self.keys: list[str] = []

    async def send(self, target: str, key: str, value: Any, headers: Any = None) -> None:
        self.keys.append(key)

    async def flush(self) -> None:
        FlakyOutbox.flushed.append(self.keys)
        if FlakyOutbox.failures:
            FlakyOutbox.failures -= 1
            raise TimeoutError("1 of 2 records not acknowledged by Kafka within 120 s")


async def test_links_not_acknowledged_are_sent_again_and_only_then_count_as_emitted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(worker_module, "Outbox", FlakyOutbox)
    monkeypatch.setattr(FlakyOutbox, "failures", 1)
    monkeypatch.setattr(FlakyOutbox, "flushed", [])
    runner = SimpleNamespace(backoff_seconds=0.01, max_backoff_seconds=0.02)
    worker = RelatedWorker(RelatedSettings(), broker=None, runner=runner)  # type: ignore[arg-type]
    worker.owned = set(range(worker.partitions))
    changed: dict[str, Any] = {}
    for doc in archive(per_topic=3):
        worker.article_versions[doc.guid] = 1
        changed.update(worker.engine.upsert(doc))

    await worker._emit_until_sent(changed)

    first, second = FlakyOutbox.flushed
    assert first and second == first, "the same links are sent again after the failed flush"
    assert set(worker.emitted) == set(second)
    await worker._emit_changes(changed)
    assert FlakyOutbox.flushed[2] == [], "once acknowledged, unchanged links are not sent again"
