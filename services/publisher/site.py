"""What every rendered page needs to know about the site itself.

Rendering is deterministic: the same events and the same `SiteConfig` give the same bytes, so this object is
the only place the site's identity (name, public address, navigation) enters a page. Changing it means
re-rendering every page, which the store can do from Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SiteConfig:
    """The site's public identity and list settings, fixed for one deployment."""

    name: str = "Broadsheet"
    base_url: str = "http://127.0.0.1:8080"
    tagline: str = "News as it happens, corrected when it changes."
    default_language: str = "en"
    page_size: int = 20
    nav_sections: tuple[tuple[str, str], ...] = ()
    """(code, name) of the sections linked from every page's header, in display order."""
    max_reply_depth: int = 5
    """How deep replies go (as the comments service's setting): a comment this deep offers no Reply link."""
    comments_close_after_days: int = 14
    """When comments close (as the comments service's setting; 0 = never): the page carries it, with the
    publication date, for its script to take the form away once the instant has passed. The page itself stays
    free of the clock, so a rebuild renders the same bytes whenever it runs."""

    @property
    def origin(self) -> str:
        """`base_url` without a trailing slash, so `origin + path` never doubles the slash."""
        return self.base_url.rstrip("/")
