"""Reader-supplied contact fields, checked the same way at the comment form and in moderation (one rule, so
the form never promises what moderation would refuse)."""

from __future__ import annotations

from urllib.parse import urlsplit

_MAX_EMAIL_CHARS = 254
_MAX_EMAIL_LOCAL_CHARS = 64


def is_valid_email(address: str) -> bool:
    """A plausible mailbox: one "@", a non-empty local part, a dotted domain of letters, digits and hyphens.

    Deliberately simple and linear: deliverability is proven by the confirmation mail, not by syntax.
    """
    if len(address) > _MAX_EMAIL_CHARS or address.count("@") != 1:
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
