"""Dead-letter records: the original bytes as the value, everything else in headers.

Keeping the value byte-for-byte means a record can be re-driven to its source topic after a fix without any
decoding step that could itself fail.
"""

from __future__ import annotations

import json

from pydantic import Field

from shared.contracts.articles import EventModel

HEADER_PREFIX = "dlq-"


class DeadLetter(EventModel):
    reason_code: str = Field(description="stable machine-readable reason, e.g. 'not_json', 'missing_guid'")
    reason: str
    source_topic: str
    source_partition: int
    source_offset: int
    consumer: str
    errors: list[dict[str, object]] = Field(default_factory=list)
    attempts: int = 1
    failed_at: str

    def headers(self) -> dict[str, str]:

        return {
            f"{HEADER_PREFIX}reason-code": self.reason_code,
            f"{HEADER_PREFIX}reason": self.reason[:1000],
            f"{HEADER_PREFIX}source-topic": self.source_topic,
            f"{HEADER_PREFIX}source-partition": str(self.source_partition),
            f"{HEADER_PREFIX}source-offset": str(self.source_offset),
            f"{HEADER_PREFIX}consumer": self.consumer,
            f"{HEADER_PREFIX}errors": json.dumps(self.errors, default=str)[:8000],
            f"{HEADER_PREFIX}attempts": str(self.attempts),
            f"{HEADER_PREFIX}failed-at": self.failed_at,
        }

    @classmethod
    def from_headers(cls, headers: dict[str, str]) -> DeadLetter:

        def h(name: str) -> str:
            return headers.get(f"{HEADER_PREFIX}{name}", "")

        return cls(
            reason_code=h("reason-code"),
            reason=h("reason"),
            source_topic=h("source-topic"),
            source_partition=int(h("source-partition") or -1),
            source_offset=int(h("source-offset") or -1),
            consumer=h("consumer"),
            errors=json.loads(h("errors") or "[]"),
            attempts=int(h("attempts") or 1),
            failed_at=h("failed-at"),
        )
