"""The Superdesk HTTP Push signature: `sha1=<hex HMAC-SHA1 of the raw body>`, keyed with SUPERDESK_PUSH_KEY."""

from __future__ import annotations

import hashlib
import hmac

from services.ingest.gateway import superdesk_signature_ok

BODY = b'{"guid": "story-1", "version": 1}'
KEY = "push-key"
DIGEST = hmac.new(KEY.encode(), BODY, hashlib.sha1).hexdigest()


def test_a_signature_is_accepted_in_either_case_of_hex() -> None:
    assert superdesk_signature_ok(BODY, f"sha1={DIGEST}", KEY)
    assert superdesk_signature_ok(BODY, f" sha1={DIGEST.upper()} ", KEY)


def test_other_bodies_keys_and_forms_are_refused() -> None:
    assert not superdesk_signature_ok(BODY + b" ", f"sha1={DIGEST}", KEY)
    assert not superdesk_signature_ok(BODY, f"sha1={DIGEST}", "another-key")
    assert not superdesk_signature_ok(BODY, DIGEST, KEY)
    assert not superdesk_signature_ok(BODY, f"sha256={DIGEST}", KEY)
    assert not superdesk_signature_ok(BODY, "", KEY)
