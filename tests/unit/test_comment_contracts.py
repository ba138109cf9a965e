"""Moderator events that change meaning must not be readable as an older event by a consumer that predates them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from shared.contracts.comments import ModerationBan, ModerationBanLifted


def test_a_lifting_is_never_read_as_a_ban() -> None:
    """A release before liftings knew only `comment.ban` and ignored unknown fields: a lifting sent as a ban with a
    flag would have been applied by it as a ban. As an event type of its own, such a consumer refuses it."""
    lifted = ModerationBanLifted(
        ban_id="b1", kind="email", hash="0" * 32, moderator="Ann", requested_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    with pytest.raises(ValidationError):
        ModerationBan.model_validate_json(lifted.model_dump_json())
    assert ModerationBanLifted.model_validate_json(lifted.model_dump_json()) == lifted
