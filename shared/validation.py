"""Reader-supplied contact fields, checked the same way at the comment form and in moderation (one rule, so
the form never promises what moderation would refuse)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_MAX_EMAIL_CHARS = 254
_MAX_EMAIL_LOCAL_CHARS = 64


_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
_ASCII_EMAIL = re.compile(
    rf"[^@\t\n\x0b\x0c\r\x1c-\x1f ]{{1,{_MAX_EMAIL_LOCAL_CHARS}}}"
    rf"@(?:{_LABEL}\.)+(?:[A-Za-z]+|xn--[A-Za-z0-9-]*[A-Za-z0-9])"
)
"""`is_valid_email`'s rule for an ASCII address as one pattern (the comments consumer checks thousands a second).
The whitespace refused in the local part is what `str.isspace` calls whitespace in ASCII: tab to carriage
return, the separators 0x1c-0x1f and the space."""


def is_valid_email(address: str) -> bool:
    """A plausible mailbox: one "@", a non-empty local part, a dotted domain of letters, digits and hyphens.

    Deliberately simple and linear: deliverability is proven by the confirmation mail, not by syntax.
    """
    if len(address) > _MAX_EMAIL_CHARS:
        return False
    if address.isascii():
        return _ASCII_EMAIL.fullmatch(address) is not None
    return _is_valid_unicode_email(address)


def _is_valid_unicode_email(address: str) -> bool:
    if address.count("@") != 1:
        return False
    local, domain = address.split("@")
    if not local or len(local) > _MAX_EMAIL_LOCAL_CHARS or any(ch.isspace() for ch in address):
        return False
    labels = domain.split(".")
    if len(labels) < 2:
        return False
    for label in labels:
        if not label or label.startswith("-") or label.endswith("-"):
            return False
        if not all(ch.isalnum() or ch == "-" for ch in label):
            return False
    return labels[-1].isalpha() or labels[-1].startswith("xn--")


def is_valid_author_url(url: str) -> bool:
    """The optional homepage must be an absolute http(s) link: anything else (javascript:, data:) is refused."""
    if any(ch.isspace() for ch in url):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
