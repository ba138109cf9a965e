"""Related settings (environment variables, see the README's configuration table)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class RelatedSettings(ServiceSettings):
    http_host: str = "127.0.0.1"
    related_http_port: int = 8083
    related_k: int = Field(default=4, ge=1, le=20, description="links per article")
    related_min_score: float | None = Field(default=None, description="weakest link kept; engine default if unset")
    related_index_cells: int = Field(
        default=1,
        ge=1,
        description=(
            "1 = exact search (every replica computes identical links); more cells bound the work per article "
            "on very large archives, at the price of links that depend on the cells fitted at start-up"
        ),
    )
