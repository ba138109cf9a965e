"""From raw bytes to a validated `NinjsDraft`, or a stable reason code saying why not.

The same checks guard the Kafka topic (a rejected record is dead-lettered) and the HTTP gateway (422), so a
newsroom gets the same answer whichever way it posts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from shared.contracts import NinjsDraft
from shared.kafka import Reject

MAX_NESTING = 64
MAX_MARKUP_TAGS = 10_000
"""Tags a draft may hold, counted as "<" characters (written or JSON-escaped) anywhere in it.

The sanitizer's HTML parser walks the stack of open elements for many start tags, so markup nested as deep as
it is long costs the square of its length: 10,000 tags of nested lists take 0.36 s to sanitize, 16,000 took
0.47 s per pass and a 2 MB draft of them would take minutes, stalling the consumer long enough to be evicted
from its group. At this bound the worst case costs about what a 2 MB draft of ordinary markup does (0.28 s for
266,000 flat tags); real copy holds a few dozen to a few thousand (the BBC corpus: 148 at most)."""


MAX_AMPERSANDS = 20_000
"""Ampersands a draft may hold, written or JSON-escaped. Each starts a character reference for the sanitizer's
parser, and text cut into that many pieces costs it the square of their number: 250 KB of "&" took 1.4 s, 1 MB
16 s, holding the gateway and the consumer that long. At this bound it costs a few milliseconds; real copy holds
a few dozen (links' query strings, `&amp;`, `&nbsp;`)."""
_GUID_FORBIDDEN = re.compile(r"[\s{}\x00-\x1f\x7f-\x9f\ud800-\udfff]")
"""What a guid may not hold: whitespace and controls (feeds and sitemaps are XML, which forbids most controls,
and a URL path cannot carry them), and the braces that mark a Redis Cluster hash tag in the keys built from it."""


def _depth(value: Any, limit: int) -> int:
    """Nesting depth, stopping at `limit` (pathologically nested JSON is refused before validation)."""
    depth, frontier = 0, [value]
    while frontier and depth <= limit:
        nxt: list[Any] = []
        for item in frontier:
            if isinstance(item, dict):
                nxt.extend(item.values())
            elif isinstance(item, list):
                nxt.extend(item)
        frontier = nxt
        depth += 1
    return depth


def reason_for(errors: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """The first error decides the code; the full list travels with the dead letter or the 422."""
    first = errors[0] if errors else {}
    loc = tuple(str(part) for part in first.get("loc", ()))
    field = loc[0] if loc else ""
    message = str(first.get("msg", "invalid draft"))
    if field in ("guid", "uri"):
        return "missing_guid" if first.get("type") == "missing" else "invalid_guid", message
    if field == "version":
        return "invalid_version", message
    if field == "type":
        return "unsupported_type", "only items of type 'text' are published"
    if field == "pubstatus":
        return "invalid_pubstatus", message
    if field in ("firstcreated", "versioncreated", "firstpublished", "embargoed"):
        return "invalid_date", message
    if "usable draft needs" in message:
        return "incomplete_draft", message.removeprefix("Value error, ")
    if "version or versioncreated" in message:
        return "missing_version", message.removeprefix("Value error, ")
    return "invalid_draft", message


def decode_draft(raw: bytes | None, *, key: bytes | None, max_bytes: int, require_key: bool = True) -> NinjsDraft:
    if raw is None or not raw:
        raise Reject("empty", "the record has no value")
    if len(raw) > max_bytes:
        raise Reject("too_large", f"draft of {len(raw)} bytes is over the {max_bytes}-byte limit")
    tags = raw.count(b"<")
    if b"\\u003" in raw:
        tags += raw.count(b"\\u003c") + raw.count(b"\\u003C")
    if tags > MAX_MARKUP_TAGS:
        raise Reject("too_large", f"draft holds {tags} tags ('<'), over the limit of {MAX_MARKUP_TAGS}")
    ampersands = raw.count(b"&") + (raw.count(b"\\u0026") if b"\\u002" in raw else 0)
    if ampersands > MAX_AMPERSANDS:
        raise Reject(
            "too_large", f"draft holds {ampersands} ampersands ('&'), over the limit of {MAX_AMPERSANDS}"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Reject("invalid_utf8", f"not valid UTF-8 at byte {exc.start}") from exc
    draft = _validated_at_once(raw) or _validated_step_by_step(text)
    forbidden = _GUID_FORBIDDEN.search(draft.guid)
    if forbidden is not None:
        raise Reject(
            "invalid_guid", f"guid holds {forbidden.group()!r}: no whitespace, control characters or braces"
        )
    if key is None and require_key:
        raise Reject("missing_key", "the record has no key; key every draft by its guid")
    if key is not None and key != draft.guid.encode():
        raise Reject("key_mismatch", "the record key differs from the draft's guid")
    return draft


def _validated_at_once(raw: bytes) -> NinjsDraft | None:
    """The draft parsed and validated in one pass of pydantic's own JSON parser, in about 60 % of the time
    `json.loads` and `model_validate` take; None when that fails, and the step-by-step path tells why.

    A draft is nested no deeper than it has brackets, so under `MAX_NESTING` of them the nesting check is
    already passed; above that (rare: real drafts hold a dozen or two) the steps run. What pydantic's parser
    refuses goes the slow way, which names the reason: invalid JSON, numbers past Python's digit limit, raw
    controls in strings, a byte-order mark, and lone surrogate escapes (which the steps accept).
    tests/unit/test_intake.py checks that a draft this pass accepts is the draft the steps would build.
    """
    if raw.count(b"[") + raw.count(b"{") > MAX_NESTING:
        return None
    try:
        return NinjsDraft.model_validate_json(raw)
    except ValidationError:
        return None


def _validated_step_by_step(text: str) -> NinjsDraft:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:  # ValueError: also an integer over Python's 4,300-digit limit
        raise Reject("not_json", f"not JSON: {exc}"[:300]) from exc
    if not isinstance(data, dict):
        raise Reject("not_object", "a draft is a JSON object")
    if _depth(data, MAX_NESTING) > MAX_NESTING:
        raise Reject("too_deep", f"JSON nested deeper than {MAX_NESTING} levels")
    try:
        draft = NinjsDraft.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        code, message = reason_for(errors)
        raise Reject(code, message, [{k: v for k, v in e.items() if k != "ctx"} for e in errors]) from exc
    return draft
