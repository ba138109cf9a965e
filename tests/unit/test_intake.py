"""Draft bytes a Python JSON reader trips over are refused with a reason code, never with a stray exception.

A stray exception in the consumer's batch-wide decode used to fail the whole batch; at the HTTP gateway it was
a 500 instead of a 422.
"""

from __future__ import annotations

import json

import pytest

from services.ingest.intake import MAX_NESTING, decode_draft
from shared.kafka import Reject
from tests.support.drafts import make_draft


def _reason(raw: bytes) -> str:
    with pytest.raises(Reject) as refused:
        decode_draft(raw, key=None, max_bytes=4 * 1024 * 1024, require_key=False)
    return refused.value.reason_code


def test_an_integer_over_pythons_digit_limit_is_not_json_to_us() -> None:
    draft = json.dumps(make_draft("big-number")).encode()
    assert _reason(draft[:-1] + b', "wire_count": ' + b"9" * 5000 + b"}") == "not_json"
    assert decode_draft(draft[:-1] + b', "wire_count": ' + b"9" * 4000 + b"}", key=None, max_bytes=1 << 22,
                        require_key=False).guid == "big-number"


@pytest.mark.parametrize(("depth", "reason"), [(MAX_NESTING + 1, "too_deep"), (100_000, "not_json")])
def test_deep_nesting_is_refused_whether_or_not_the_reader_can_follow_it(depth: int, reason: str) -> None:
    draft = json.dumps(make_draft("deep")).encode()
    assert _reason(draft[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}") == reason
