"""The ASCII fast path of `is_valid_email` is the general rule, character for character."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.validation import _is_valid_unicode_email, is_valid_email

# Every ASCII character class the rule tells apart, several of each so hypothesis builds real addresses.
PIECES = st.sampled_from(
    [*"aZx0n9-.@_+", "xn--", "@", ".", "-", " ", "\t", "\n", "\x0b", "\x1c", "\x1f", "\x00", "\x7f", "com", "ab"]
)


@given(st.lists(PIECES, max_size=24).map("".join))
@settings(max_examples=3000)
@example("ann.reader+news@mail.example.co.uk")
@example("a@b.xn--p1ai")
@example("a@b.xn--")
@example("a@b.c-")
@example("a@-b.c")
@example("a@b..c")
@example("x" * 64 + "@example.org")
@example("x" * 65 + "@example.org")
def test_ascii_addresses_follow_the_general_rule(address: str) -> None:
    assert is_valid_email(address) == _is_valid_unicode_email(address)


@given(st.from_regex(r"[a-z.\x00-\x20]{1,70}@[a-z0-9.-]{1,30}\.(?:[a-z]{1,6}|xn--[a-z0-9-]{0,5})", fullmatch=True))
def test_near_valid_addresses_follow_the_general_rule(address: str) -> None:
    assert is_valid_email(address) == _is_valid_unicode_email(address)


def test_every_ascii_character_in_every_position() -> None:
    templates = ["a{}b@example.org", "{}@example.org", "a@ex{}ample.org", "a@example.{}rg", "a@example.o{}",
                 "a@{}.org", "a@example.xn--p1a{}", "a@example.xn--{}", "a@b{}c"]  # fmt: skip
    for code in range(128):
        for template in templates:
            address = template.format(chr(code))
            assert is_valid_email(address) == _is_valid_unicode_email(address), repr(address)


def test_length_limits() -> None:
    assert is_valid_email("a@" + "b" * 240 + ".org") == (len("a@" + "b" * 240 + ".org") <= 254)
    assert not is_valid_email("a@" + "b" * 260 + ".org")
    assert not is_valid_email("é@" + "b" * 260 + ".org")
