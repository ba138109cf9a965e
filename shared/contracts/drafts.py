"""The input contract: a news item in IPTC ninjs 1.x as newsroom systems (Superdesk) publish it.

Only the fields Broadsheet uses are typed; everything else is accepted and kept (`extra="allow"`), so a draft
can be re-driven or inspected exactly as it arrived.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

PubStatus = Literal["usable", "withheld", "canceled"]
MAX_VERSION = 2**53 - 1
"""The largest version every fence compares exactly: the Redis scripts that guard writes (and JavaScript) hold
numbers as doubles. Versions start at 0, so "no version yet" can be told apart from any real one."""
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
CORRECTION_NOTE = re.compile(r"\s*(this (story|article) )?(correction|corrected|correcting)\b", re.IGNORECASE)
RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:?[0-9]{2})"
)
"""RFC 3339's date-time (a space for the "T" as its note allows), and offsets without the colon, which Superdesk
writes ("+0000"). Python's `fromisoformat` alone takes much more: week dates, no seconds, "+00", "," fractions."""


def parse_rfc3339(value: object) -> datetime | None:
    """RFC 3339 demands a full date, a time and an offset; pydantic alone would accept a bare date or epoch."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("date-time must carry a UTC offset (RFC 3339)")
        return value
    if not isinstance(value, str):
        raise ValueError("date-time must be an RFC 3339 string")
    text = value.strip()
    if not RFC3339.fullmatch(text):
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}") from exc
    if parsed.tzinfo is None:
        raise ValueError(f"RFC 3339 date-time without offset: {value!r}")
    try:
        parsed.astimezone(UTC)  # dates are kept in UTC; year 9999 at -05:00 is already year 10000 there
    except OverflowError as exc:
        raise ValueError(f"date-time out of range once in UTC: {value!r}") from exc
    return parsed


class NinjsModel(BaseModel):
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)


class NinjsAuthor(NinjsModel):
    name: str = ""
    role: str | None = None
    biography: str | None = None
    avatar_url: str | None = None


class NinjsCode(NinjsModel):
    code: str | None = None
    name: str | None = None
    scheme: str | None = None


class NinjsRendition(NinjsModel):
    href: str
    width: int | None = None
    height: int | None = None
    mimetype: str | None = None


class NinjsAssociation(NinjsModel):
    type: str | None = None
    renditions: dict[str, NinjsRendition] = Field(default_factory=dict)
    description_text: str | None = None
    body_text: str | None = None
    headline: str | None = None
    byline: str | None = None


class NinjsDraft(NinjsModel):
    """A ninjs item. `guid` falls back to `uri`; `version` falls back to `versioncreated` ordering."""

    guid: str = Field(validation_alias=AliasChoices("guid", "uri"), min_length=1, max_length=512)
    version: int | None = None
    type: Literal["text"] = "text"
    pubstatus: PubStatus = "usable"
    headline: str | None = None
    slugline: str | None = None
    body_html: str | None = None
    description_text: str | None = None
    description_html: str | None = None
    byline: str | None = None
    authors: list[NinjsAuthor] = Field(default_factory=list)
    service: list[NinjsCode] = Field(default_factory=list)
    subject: list[NinjsCode] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    place: list[NinjsCode] = Field(default_factory=list)
    genre: list[NinjsCode] = Field(default_factory=list)
    language: str = "en"
    firstcreated: datetime | None = None
    versioncreated: datetime | None = None
    firstpublished: datetime | None = None
    embargoed: datetime | None = None
    associations: dict[str, NinjsAssociation | None] = Field(default_factory=dict)
    ednote: str | None = None
    signal: list[NinjsCode | str] = Field(default_factory=list)
    evolvedfrom: str | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _numeric_version(cls, value: object) -> object:
        if value is None or isinstance(value, bool):
            if isinstance(value, bool):
                raise ValueError("version must be an integer")
            return None
        if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int):
            raise ValueError("version must be an integer or a numeric string")
        if not 0 <= value <= MAX_VERSION:
            raise ValueError(f"version must be between 0 and {MAX_VERSION}")
        return value

    @field_validator("firstcreated", "versioncreated", "firstpublished", "embargoed", mode="before")
    @classmethod
    def _rfc3339(cls, value: object) -> datetime | None:
        return parse_rfc3339(value)

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: object) -> object:
        return value or "en"

    @model_validator(mode="after")
    def _publishable(self) -> NinjsDraft:
        if self.version is None and (self.versioncreated is None or self.versioncreated < EPOCH):
            # Without a version, versioncreated in epoch milliseconds is the version: it must not be negative.
            raise ValueError("either version or versioncreated (from 1970 on) is required to order versions")
        if self.pubstatus == "usable":
            missing = [f for f in ("headline", "body_html") if not (getattr(self, f) or "").strip()]
            if missing:
                raise ValueError(f"a usable draft needs {' and '.join(missing)}")
        return self

    def is_correction(self) -> bool:
        signals = {s if isinstance(s, str) else (s.code or "") for s in self.signal}
        if any("correction" in s.lower() for s in signals):
            return True
        # An editor's note counts only when it says it is a correction ("Correction: …", "Corrected …"),
        # not whenever the word appears ("no correction needed").
        return bool(self.ednote and CORRECTION_NOTE.match(self.ednote))

    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})
