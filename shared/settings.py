"""Settings shared by every service, read from the environment (pydantic-settings).

Each service extends `ServiceSettings` in its own `config.py`; the fields here are the ones every process
needs to reach Kafka and Redis and to describe itself in logs and metrics.
"""

from __future__ import annotations

import json
import ssl
import sys
from datetime import UTC, datetime
from typing import Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_SECRET_MARKER = "change-me"  # noqa: S105 - the marker that production refuses, not a secret
CONFIGURATION_EXIT_CODE = 2


class ServiceSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore", frozen=True)

    environment: Literal["development", "test", "production"] = "development"
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SSL", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: str | None = None
    kafka_replication_factor: int = Field(default=1, ge=1)
    kafka_partitions: int = Field(default=12, ge=1)
    kafka_topic_prefix: str = Field(
        default="",
        description="Prepended to every internal topic name; lets tests and tenants share one cluster.",
    )
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_namespace: str = Field(default="bs", description="Prefix of every Redis key this deployment owns.")
    log_level: str = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"
    max_draft_bytes: int = 2 * 1024 * 1024
    instance_id: str | None = Field(
        default=None,
        description="Stable id of this replica (e.g. the pod name); enables static group membership.",
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> ServiceSettings:
        if self.kafka_security_protocol.startswith("SASL") and not (
            self.kafka_sasl_username and self.kafka_sasl_password
        ):
            raise ValueError("KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD are required with SASL")
        return self

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.kafka_security_protocol.endswith("SSL"):
            return None
        return ssl.create_default_context(cafile=self.kafka_ssl_cafile)


def refuse_default_secret(name: str, value: SecretStr, environment: str) -> None:
    """Outside development a default secret is a misconfiguration, not a convenience."""
    if environment == "production" and DEFAULT_SECRET_MARKER in value.get_secret_value():
        raise ValueError(f"{name} still holds the default value; set it in the environment")


S = TypeVar("S", bound=ServiceSettings)


def load_settings(cls: type[S], service: str) -> S:
    """The process's settings, or one JSON line naming what the environment gets wrong and exit 2.

    Logging is not configured yet (its settings are among these), and an operator reading a crash-looping pod's
    log wants the variable and the reason, not a traceback through pydantic. Secrets never appear: the input
    values are left out.
    """
    try:
        return cls()
    except ValidationError as exc:
        errors = [
            {"setting": "_".join(str(part) for part in error["loc"]).upper() or None, "problem": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        line = {
            "event": "configuration invalid", "level": "critical", "service": service,
            "timestamp": datetime.now(UTC).isoformat(), "errors": errors,
        }
        print(json.dumps(line), file=sys.stderr, flush=True)
        raise SystemExit(CONFIGURATION_EXIT_CODE) from None
