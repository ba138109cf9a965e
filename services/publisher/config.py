"""Publisher settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, refuse_default_secret


class PublisherSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    publisher_http_port: int = 8080
    site_name: str = "Broadsheet"
    site_base_url: str = "http://127.0.0.1:8080"
    site_tagline: str = "News as it happens, corrected when it changes."
    page_size: int = Field(default=20, ge=1, le=200)
    comments_close_after_days: int = Field(default=14, ge=0, description="as the comments service; 0 = never")
    comments_max_reply_depth: int = Field(default=5, ge=0, description="as the comments service")
    comment_form_secret: SecretStr = SecretStr("change-me-comment-form-secret")
    comment_flood_seconds: int = Field(default=15, ge=1, description="one comment per e-mail and per IP in this time")
    comment_trust_forwarded_for: bool = Field(
        default=False, description="take the reader's IP from X-Forwarded-For (only behind a trusted proxy)"
    )
    cache_max_pages: int = Field(default=50_000, description="pages kept in process memory, invalidated by Redis")
    cache_max_bytes: int = Field(
        default=256 * 1024 * 1024, ge=0, description="and the bytes they may take (pages and their gzip copies)"
    )
    max_form_bytes: int = 64 * 1024
    rebuild_workers: int = Field(default=0, ge=0, le=64, description="processes a rebuild uses; 0 = one per CPU")

    @model_validator(mode="after")
    def _no_default_secrets(self) -> PublisherSettings:
        refuse_default_secret("COMMENT_FORM_SECRET", self.comment_form_secret, self.environment)
        return self
