"""Draft bytes a Python JSON reader trips over are refused with a reason code, never with a stray exception.

A stray exception in the consumer's batch-wide decode used to fail the whole batch; at the HTTP gateway it was
a 500 instead of a 422.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.ingest.intake import MAX_NESTING, _validated_at_once, _validated_step_by_step, decode_draft
from shared.contracts import NinjsDraft
from shared.kafka import Reject, json_bytes
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


@pytest.mark.parametrize(
    "moment",
    ["2024-W12-3T09:30:00Z", "2024-03-20T09:30Z", "2024-03-20T09:30+00:00", "2024-03-20T09:30:00+00",
     "2024-03-20T09:30:00,5Z", "2024-03-20T09:30:00+00:00:30", "2024-03-20", "20240320T093000Z",
     "２０２４-03-20T09:30:00Z", "2024-03-20T09:30:00"],
)
def test_only_an_rfc_3339_date_time_is_a_date(moment: str) -> None:
    """Python's `fromisoformat` reads all of these; RFC 3339 (the contract) allows none."""
    assert _reason(_with(firstcreated=moment)) == "invalid_date"


@pytest.mark.parametrize(
    "moment",
    ["2024-03-20T09:30:00Z", "2024-03-20t09:30:00z", "2024-03-20 09:30:00Z", "2024-03-20T09:30:00.123456+01:00",
     "2024-03-20T09:30:00+0000"],
)
def test_rfc_3339_date_times_and_superdesks_offsets_are_read(moment: str) -> None:
    assert _accepted(_with(firstcreated=moment))


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


def test_a_draft_may_hold_twenty_thousand_ampersands_and_no_more() -> None:
    """Text cut by "&" into many pieces costs the sanitizer the square of their number (1 MB of them: 16 s)."""
    assert _accepted(_with(body_html="<p>" + "&" * 19_000 + "</p>"))
    assert _reason(_with(body_html="<p>" + "&" * 20_001 + "</p>")) == "too_large"
    escaped = _with(body_html="").replace(b'"body_html": ""', b'"body_html": "' + b"\\u0026" * 20_001 + b'"')
    assert _reason(escaped) == "too_large", "a JSON-escaped '&' is one all the same"


@pytest.mark.parametrize("guid", ["story\u0001x", "story\nnext", "two words", "a{b}c", "tab\there", "x\u0085y"])
def test_a_guid_holds_no_whitespace_controls_or_braces(guid: str) -> None:
    """A control character in a guid reached the feeds' <guid> and made them unreadable XML for every reader;
    braces would cut the Redis Cluster hash tag of the keys built from it."""
    assert _reason(_with(guid=guid)) == "invalid_guid"


@pytest.mark.parametrize("guid", ["urn:newsml:example.org:20240320:harbour", "tag:afp.com,2024:newsml_ABC-1", "Zoë-1"])
def test_ordinary_guids_are_accepted(guid: str) -> None:
    assert decode_draft(_with(guid=guid), key=None, max_bytes=1 << 22, require_key=False).guid == guid


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
_fields = st.sampled_from([
    "guid", "uri", "version", "type", "pubstatus", "headline", "slugline", "body_html", "description_text",
    "byline", "authors", "service", "subject", "keywords", "language", "firstcreated", "versioncreated",
    "firstpublished", "embargoed", "associations", "ednote", "signal", "evolvedfrom", "wire_count", "x",
])  # fmt: skip
_plausible = st.sampled_from([
    "3", " 7 ", 2**53, "2026-11-26T10:00:00Z", "2026-11-26 10:00:00+05:30", "2026-11-26", "withheld", "canceled",
    [{"code": "world", "name": "World"}], [{"name": "Zoë", "role": "writer"}], {"main": {"renditions": {}}},
    {"main": {"renditions": {"x": {"href": "https://i.test/a.jpg", "width": "640"}}}}, "  padded  ", "",
])  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    changes=st.dictionaries(_fields, _json_values | _plausible, max_size=3),
    extras=st.dictionaries(st.text(min_size=1, max_size=6).map("x-{}".format), _json_values, max_size=3),
    ascii_only=st.booleans(),
)
def test_the_one_pass_and_the_step_by_step_decoding_agree(
    changes: dict[str, object], extras: dict[str, object], ascii_only: bool
) -> None:
    """A draft pydantic's JSON parser accepts in one pass is the draft the steps would have built."""
    raw = json.dumps({**make_draft("agree"), **changes, **extras}, ensure_ascii=ascii_only).encode()
    at_once = _validated_at_once(raw)
    try:
        stepwise: NinjsDraft | str = _validated_step_by_step(raw.decode())
    except Reject as refused:
        stepwise = refused.reason_code
    if at_once is not None:
        assert isinstance(stepwise, NinjsDraft)
        assert at_once.model_dump() == stepwise.model_dump()
        assert json_bytes(at_once) == json_bytes(stepwise)


@pytest.mark.parametrize("extra", [
    b'"\\ud800"', b"NaN", b"-Infinity", b"1.5e400", b"-0", b'"\\u0000"', b"9" * 4000, b'"\\ud83d\\ude00"',
])  # fmt: skip
def test_values_at_the_edges_of_the_two_json_readers_decode_alike(extra: bytes) -> None:
    raw = json.dumps(make_draft("edges")).encode()[:-1] + b', "x": ' + extra + b"}"
    draft = decode_draft(raw, key=b"edges", max_bytes=1 << 22)
    reference = _validated_step_by_step(raw.decode())
    assert json.dumps(draft.model_extra) == json.dumps(reference.model_extra)
