"""Stored bans and author histories are keyed by these hashes: they must stay HMAC-SHA256 of "kind:value"."""

from __future__ import annotations

import hmac

from services.comments.store import Hasher


def _reference(key: str, kind: str, value: str) -> str:
    return hmac.digest(key.encode(), f"{kind}:{value}".encode(), "sha256").hex()[:32]


def test_hashes_are_hmac_sha256_of_kind_and_normalized_value() -> None:
    hasher = Hasher("a-secret-key")
    assert hasher.email("  Reader@Example.ORG ") == _reference("a-secret-key", "email", "reader@example.org")
    assert hasher.ip(" 2001:DB8::1 ") == _reference("a-secret-key", "ip", "2001:db8::1")
    assert hasher.reader("cookie-123") == _reference("a-secret-key", "reader", "cookie-123")
    assert hasher.email("x@example.org") != Hasher("another-key").email("x@example.org")


def test_remembered_hashes_do_not_change_when_the_memory_is_full() -> None:
    hasher = Hasher("k")
    first = hasher.email("first@example.org")
    for n in range(Hasher.REMEMBERED + 10):
        hasher.ip(f"10.0.{n // 250}.{n % 250}")
    assert hasher.email("first@example.org") == first == _reference("k", "email", "first@example.org")
    assert len(hasher._known) <= Hasher.REMEMBERED
