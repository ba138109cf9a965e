"""Ingest settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import ServiceSettings, refuse_default_secret


class IngestSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    ingest_http_port: int = 8081
    ingest_token: SecretStr = SecretStr("change-me-ingest-token")
    superdesk_push_key: SecretStr = SecretStr("change-me-superdesk-push-key")
    embargo_poll_seconds: float = Field(default=0.25, gt=0, description="how often held stories are checked")
    embargo_lease_seconds: float = Field(default=30.0, gt=0, description="a release claimed by a replica that dies")

    @model_validator(mode="after")
    def _no_default_secrets(self) -> IngestSettings:
        refuse_default_secret("INGEST_TOKEN", self.ingest_token, self.environment)
        refuse_default_secret("SUPERDESK_PUSH_KEY", self.superdesk_push_key, self.environment)
        return self
