"""What a cached page answers, by the request's Accept-Encoding and If-None-Match (no server needed)."""

from __future__ import annotations

import gzip

import pytest

from services.publisher.web import PreparedPage, Variant, accepts_gzip

BODY = b"<!doctype html><p>" + b"story " * 200 + b"</p>"
PAGE = PreparedPage(200, BODY, gz=gzip.compress(BODY, mtime=0), etag=b'"abc123"')


def header(variant: Variant, name: bytes) -> bytes | None:
    return dict(variant.headers).get(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip, deflate, br, zstd", True),
        (b"GZIP", True),
        (b"x-gzip", True),
        (b"gzip;q=0.5, identity", True),
        (b"gzip;q=0, identity", False),
        (b"gzip; q=0.000", False),
        (b"identity, gzip;q=0", False),
        (b"br;q=1, gzip;q=bad", False),
        (b"deflate, br", False),
        (b"", False),
    ],
)
def test_gzip_is_acceptable_only_with_a_weight_above_zero(value: bytes, expected: bool) -> None:
    assert accepts_gzip(value) is expected


def test_each_encoding_has_its_own_tag_and_revalidates_against_it() -> None:
    zipped = PAGE.answer(head=False, accepts_gzip=True, if_none_match=b"")
    plain = PAGE.answer(head=False, accepts_gzip=False, if_none_match=b"")
    assert header(zipped, b"content-encoding") == b"gzip"
    assert header(plain, b"content-encoding") is None
    gzip_tag, plain_tag = header(zipped, b"etag"), header(plain, b"etag")
    assert gzip_tag == b'"abc123-gz"' and plain_tag == b'"abc123"'

    assert PAGE.answer(head=False, accepts_gzip=True, if_none_match=gzip_tag).status == 304
    assert PAGE.answer(head=False, accepts_gzip=False, if_none_match=plain_tag).status == 304
    assert PAGE.answer(head=False, accepts_gzip=False, if_none_match=b'W/"abc123"').status == 304
    # A tag of the other representation does not say the client holds this one.
    assert PAGE.answer(head=False, accepts_gzip=False, if_none_match=gzip_tag).status == 200
    assert PAGE.answer(head=False, accepts_gzip=True, if_none_match=plain_tag).status == 200
    assert header(PAGE.answer(head=False, accepts_gzip=True, if_none_match=gzip_tag), b"etag") == gzip_tag
