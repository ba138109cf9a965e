"""In production a service refuses to start while a secret still holds its published default."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.comments.config import CommentsSettings
from services.ingest.config import IngestSettings
from services.publisher.config import PublisherSettings
from shared.settings import ServiceSettings

SECRETS: dict[type[ServiceSettings], tuple[str, ...]] = {
    IngestSettings: ("INGEST_TOKEN", "SUPERDESK_PUSH_KEY"),
    CommentsSettings: ("MODERATION_TOKEN", "COMMENTS_HASH_KEY"),
    PublisherSettings: ("COMMENT_FORM_SECRET",),
}
CASES = [(cls, name) for cls, names in SECRETS.items() for name in names]


@pytest.mark.parametrize(("cls", "missing"), CASES, ids=[name for _, name in CASES])
def test_production_refuses_a_default_secret(
    cls: type[ServiceSettings], missing: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")
    for name in SECRETS[cls]:
        if name != missing:
            monkeypatch.setenv(name, f"operator-{name.lower()}")
    with pytest.raises(ValidationError, match=missing):
        cls()
    monkeypatch.setenv(missing, f"operator-{missing.lower()}")
    cls()


def test_development_starts_with_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "development")
    for cls in SECRETS:
        cls()
