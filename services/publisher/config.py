"""Publisher settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator

from shared.settings import ServiceSettings, refuse_default_secret


class PublisherSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    publisher_http_port: int = 8080
    site_name: str = "Broadsheet"
    site_base_url: str = "http://127.0.0.1:8080"
    site_tagline: str = "News as it happens, corrected when it changes."
    page_size: int = Field(default=20, ge=1, le=200)
    site_nav_sections: str = Field(
        default="", description="sections linked from every page's header, in order: `code=Name` pairs or bare "
        "codes (shown as they are), comma-separated, e.g. `world=World,business=Business`",
    )
    comments_close_after_days: int = Field(default=14, ge=0, description="as the comments service; 0 = never")
    comments_max_reply_depth: int = Field(default=5, ge=0, description="as the comments service")
    comment_form_secret: SecretStr = SecretStr("change-me-comment-form-secret")
    comments_flood_seconds: int = Field(
        default=15, ge=0, validation_alias=AliasChoices("comments_flood_seconds", "comment_flood_seconds"),
        description="as the comments service (one name for both; COMMENT_FLOOD_SECONDS is still read); 0 = no limit",
    )
    comment_trust_forwarded_for: bool = Field(
        default=False, description="take the reader's IP from X-Forwarded-For (only behind a trusted proxy)"
    )
    cache_max_pages: int = Field(default=50_000, description="pages kept in process memory, invalidated by Redis")
    cache_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=0, description="and the bytes they may take (pages and their gzip copies)"
    )
    max_form_bytes: int = 64 * 1024
    rebuild_workers: int = Field(default=0, ge=0, le=64, description="processes a rebuild uses; 0 = one per CPU")

    @field_validator("site_nav_sections")
    @classmethod
    def _nav_sections_parse(cls, value: str) -> str:
        parse_nav_sections(value)
        return value

    @property
    def nav_sections(self) -> tuple[tuple[str, str], ...]:
        return parse_nav_sections(self.site_nav_sections)

    @model_validator(mode="after")
    def _no_default_secrets(self) -> PublisherSettings:
        refuse_default_secret("COMMENT_FORM_SECRET", self.comment_form_secret, self.environment)
        return self


def parse_nav_sections(value: str) -> tuple[tuple[str, str], ...]:
    """(code, name) pairs from `world=World, business`: a plain string in the environment, like the site's other
    settings, rather than JSON. A code given twice is linked once, where it first appears."""
    sections: dict[str, str] = {}
    for entry in value.split(","):
        if not entry.strip():
            continue
        code, has_name, name = (part.strip() for part in entry.partition("="))
        if not code or (has_name and not name):
            raise ValueError(f"a section is `code` or `code=Name`, not {entry.strip()!r}")
        sections.setdefault(code, name or code)
    return tuple(sections.items())
