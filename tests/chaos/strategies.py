"""Hypothesis strategies for malformed records and requests, and a way to draw many examples at once.

Every strategy here produces something that must be refused, by construction (a record that could be valid by
accident would make the checks flaky): bytes that are not JSON, invalid UTF-8, JSON that is not an object,
objects with wrong types or without the required keys, pathological nesting, NUL bytes, a key that is not the
guid, and records over the size limit.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(
    max_size=30
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
NOT_COERCIBLE = st.lists(JSON_SCALARS, max_size=3) | st.dictionaries(st.text(max_size=5), JSON_SCALARS, max_size=3)


def draw_many(strategy: st.SearchStrategy[Any], count: int, seed: int = 0) -> list[Any]:
    """`count` examples of `strategy`, reproducibly (derandomized; no example database)."""
    drawn: list[Any] = []

    @settings(
        max_examples=count, database=None, derandomize=True, phases=[Phase.generate], deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: Any) -> None:
        drawn.append(example)

    collect()
    # derandomized generation may repeat or stop short on small spaces: cycle to the wanted count
    while drawn and len(drawn) < count:
        drawn.extend(drawn[: count - len(drawn)])
    return drawn[:count]


def _is_json_object(raw: bytes) -> bool:
    try:
        return isinstance(json.loads(raw), dict)
    except (ValueError, RecursionError):
        return False


def bad_drafts(valid: dict[str, Any], max_bytes: int) -> st.SearchStrategy[tuple[str, bytes, bool]]:
    """(category, value, key is the guid) of records ingest must dead-letter; `valid` is a well-formed draft."""

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    fields = ("guid", "version", "headline", "body_html", "type", "pubstatus")
    wrong_type = st.tuples(st.sampled_from(fields), NOT_COERCIBLE).map(
        lambda pair: ("wrong_type", dumps({**valid, pair[0]: pair[1]}), True)
    )
    not_json = st.binary(min_size=1, max_size=300).filter(lambda b: not _is_json_object(b)).map(
        lambda b: ("not_json", b, True)
    )
    invalid_utf8 = st.binary(max_size=50).map(
        lambda b: ("invalid_utf8", b'{"guid": "' + b + b'\xff\xfe\xc3", "version": 1}', True)
    )
    not_object = JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("not_object", dumps(v), True))
    no_guid = st.dictionaries(
        st.text(max_size=12).filter(lambda k: k not in ("guid", "uri")), JSON_VALUES, max_size=6
    ).map(lambda d: ("wrong_keys", dumps(d), True))
    deep = st.integers(min_value=70, max_value=5000).map(
        lambda depth: ("too_deep", b'{"guid": "deep", "version": 1, "x": ' + b"[" * depth + b"]" * depth + b"}", True)
    )
    nul = st.text(max_size=20).map(lambda t: ("nul", dumps({**valid, "guid": f"nul\x00{t}"}), True))
    nul_bytes = st.integers(min_value=1, max_value=20).map(lambda n: ("nul_bytes", b"\x00" * n, True))
    wrong_key = st.just(("key_mismatch", dumps(valid), False))
    unsupported = st.sampled_from(("picture", "video", "composite")).map(
        lambda t: ("unsupported_type", dumps({**valid, "type": t}), True)
    )
    return st.one_of(wrong_type, not_json, invalid_utf8, not_object, no_guid, deep, nul, nul_bytes, wrong_key,
                     unsupported)


def huge_draft(valid: dict[str, Any], max_bytes: int) -> bytes:
    """A well-formed draft just over the size limit (and under the topic's record limit)."""
    padding = "x" * (max_bytes + 1024 - len(json.dumps(valid)))
    return json.dumps({**valid, "body_html": f"<p>{padding}</p>"}).encode()


def bad_submissions(valid: dict[str, Any]) -> st.SearchStrategy[tuple[str, bytes]]:
    """Records the comments consumer must dead-letter; `valid` is a well-formed `comment.submitted` event."""

    def dumps(value: Any) -> bytes:
        return json.dumps(value).encode()

    fields = ("id", "article_guid", "author", "email", "body", "submitted_at")
    return st.one_of(
        st.binary(min_size=1, max_size=300).filter(lambda b: not _is_json_object(b)).map(lambda b: ("not_json", b)),
        st.binary(max_size=50).map(
            lambda b: ("invalid_utf8", b'{"event": "comment.submitted", "id": "' + b + b'\xff"}')
        ),
        JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(lambda v: ("not_object", dumps(v))),
        st.tuples(st.sampled_from(fields), NOT_COERCIBLE).map(
            lambda pair: ("wrong_type", dumps({**valid, pair[0]: pair[1]}))
        ),
        st.dictionaries(st.text(max_size=12).filter(lambda k: k != "event"), JSON_VALUES, max_size=6).map(
            lambda d: ("wrong_keys", dumps(d))
        ),
        st.text(max_size=20).filter(lambda t: not t.startswith("comment.")).map(
            lambda t: ("unknown_event", dumps({**valid, "event": t}))
        ),
        st.integers(min_value=70, max_value=3000).map(
            lambda depth: ("too_deep", b'{"event": "comment.submitted", "x": ' + b"[" * depth + b"]" * depth + b"}")
        ),
        st.integers(min_value=1, max_value=20).map(lambda n: ("nul_bytes", b"\x00" * n)),
    )
