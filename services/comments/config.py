"""Comments settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, refuse_default_secret


class CommentsSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    comments_http_port: int = 8082
    moderation_token: SecretStr = SecretStr("change-me-moderation-token")
    comments_close_after_days: int = Field(default=14, ge=0)

    @model_validator(mode="after")
    def _no_default_secrets(self) -> CommentsSettings:
        refuse_default_secret("MODERATION_TOKEN", self.moderation_token, self.environment)
        return self
