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


def _with(**changes: object) -> bytes:
    draft = {**make_draft("edge"), **changes}
    return json.dumps({k: v for k, v in draft.items() if v is not None}).encode()


def _accepted(raw: bytes) -> bool:
    return decode_draft(raw, key=None, max_bytes=1 << 22, require_key=False).guid == "edge"


@pytest.mark.parametrize("version", [0, 1, "17", 2**53 - 1])
def test_versions_every_fence_compares_exactly_are_accepted(version: object) -> None:
    assert _accepted(_with(version=version))


@pytest.mark.parametrize("version", [-1, 2**53, "²", "9" * 5000, 1.5, True])
def test_versions_a_fence_would_misread_are_refused(version: object) -> None:
    """Negative versions sort below "no version yet" in the Redis fences; above 2**53 they compare as doubles."""
    assert _reason(_with(version=version)) == "invalid_version"


def test_without_a_version_versioncreated_must_be_from_1970_on() -> None:
    """It becomes the version in epoch milliseconds, which must not be negative."""
    assert _reason(_with(version=None, versioncreated="1969-07-20T20:17:40Z")) == "missing_version"
    assert _accepted(_with(version=3, versioncreated="1969-07-20T20:17:40Z"))
    assert _accepted(_with(version=None, versioncreated="1970-01-01T00:00:00Z"))


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00"])
def test_a_date_beyond_the_calendar_once_in_utc_is_an_invalid_date(moment: str) -> None:
    assert _reason(_with(firstcreated=moment)) == "invalid_date"
    assert _reason(_with(versioncreated=moment)) == "invalid_date"


def test_a_draft_may_hold_ten_thousand_tags_and_no_more() -> None:
    """Nested markup costs the sanitizer the square of its length: the bound keeps one draft's worst case
    near what 2 MB of ordinary markup costs."""
    assert _accepted(_with(body_html="<ul><li>" * 4_990 + "x"))
    assert _reason(_with(body_html="<ul><li>" * 5_001 + "x")) == "too_large"
    escaped = _with(body_html="").replace(b'"body_html": ""', b'"body_html": "' + b"\\u003cdiv>" * 10_001 + b'x"')
    assert _reason(escaped) == "too_large", "a JSON-escaped '<' is a tag all the same"
