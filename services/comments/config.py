"""Comments settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, refuse_default_secret

# Whole words or phrases, matched after folding (case, accents, look-alike letters, leetspeak); see textnorm.
DEFAULT_BANNED_WORDS = "fuck,fucking,motherfucker,cunt,kill yourself"
DEFAULT_SUSPECT_WORDS = "idiot,moron,scum"


class CommentsSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    comments_http_port: int = 8082
    moderation_token: SecretStr = SecretStr("change-me-moderation-token")
    site_base_url: str = Field(
        default="http://127.0.0.1:8080", description="the public site, as the publisher's: links to the stories"
    )
    comments_close_after_days: int = Field(default=14, ge=0, description="0 = never (as the publisher reads it)")
    comments_spam_threshold: float = Field(
        default=0.55, ge=0.0, le=1.0, description="spam-model score at or above which a comment is held as spam"
    )
    comments_banned_words: str = Field(default=DEFAULT_BANNED_WORDS, description="comma-separated; rejects")
    comments_suspect_words: str = Field(default=DEFAULT_SUSPECT_WORDS, description="comma-separated; holds")
    comments_flood_seconds: int = Field(default=15, ge=0)
    comments_max_links: int = Field(default=2, ge=1)
    comments_max_reply_depth: int = Field(default=5, ge=0)
    comments_hold_first_time: bool = True
    comments_report_threshold: int = Field(default=3, ge=1, description="distinct readers that hide a comment")
    comments_surge_rate_on: int = Field(default=20, ge=1, description="comments per minute that start a surge")
    comments_surge_rate_off: int = Field(default=10, ge=0)
    comments_surge_calm_minutes: float = Field(default=10.0, gt=0)
    comments_surge_tick_seconds: float = Field(default=5.0, gt=0)
    comments_hash_key: SecretStr = Field(
        default=SecretStr("change-me-comments-hash-key"),
        description="keys the hashes of e-mail addresses and IPs kept for bans, floods and trust; changing it "
        "forgets them",
    )

    @model_validator(mode="after")
    def _no_default_secrets(self) -> CommentsSettings:
        refuse_default_secret("MODERATION_TOKEN", self.moderation_token, self.environment)
        # A known key would let anyone reverse the stored IP hashes by trying every address.
        refuse_default_secret("COMMENTS_HASH_KEY", self.comments_hash_key, self.environment)
        return self

    @staticmethod
    def word_list(raw: str) -> tuple[str, ...]:
        return tuple(word.strip() for word in raw.split(",") if word.strip())
