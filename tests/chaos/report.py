"""Render the fault matrix of a chaos run as Markdown (docs/chaos-report.md).

    .venv/bin/python -m tests.chaos.report [.run/chaos-results.json] [docs/chaos-report.md]

The long profile (`make chaos`) writes the report itself at the end of the session; this entry point re-renders
it from the JSON rows every chaos session leaves in `.run/chaos-results.json`.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

COLUMNS = (
    ("fault", "fault"),
    ("target", "service"),
    ("injections", "injections"),
    ("drafts", "drafts sent"),
    ("drafts_unknown", "outcome unknown"),
    ("lost", "drafts lost"),
    ("duplicated_effects", "effects duplicated"),
    ("differing", "pages differing"),
    ("duplicated_processing", "duplicated processing (counted)"),
    ("recovery_s", "time to recover (s)"),
    ("drain_s", "lag back to 0 (s)"),
)


def cell(value: Any) -> str:
    if value is None:
        return "–"
    return str(value)


def render_report(rows: list[dict[str, Any]], *, profile: str) -> str:
    passed = all(r["lost"] == 0 and r["duplicated_effects"] == 0 and r["differing"] == 0 for r in rows)
    lines = [
        "# Chaos report",
        "",
        f"Profile `{profile}`, {len(rows)} fault runs, generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
        "`make chaos` (tests/chaos). Every run drives a seeded workload (BBC stories with revisions, kills, holds "
        "and embargoes; real and spam comments through the publisher's form; a moderator approving) on a private "
        "Kafka broker and Redis, injects the fault while the load runs, then checks every page against a model "
        "of the history.",
        "",
        "- **drafts lost**: acknowledged drafts or approved comments missing from their page, or draft records "
        "with neither an article event nor a dead letter.",
        "- **effects duplicated**: a comment shown twice, a story listed twice on one page.",
        "- **pages differing**: a page at a version the history does not allow, a killed/held story visible "
        "anywhere, a polling reader seeing a version go backwards.",
        "- **duplicated processing**: draft records processed more than once (at-least-once delivery after a "
        "crash); harmless when the effects are idempotent, so counted and not failed.",
        "- **time to recover**: from the fault to the page of a draft produced at that moment.",
        "",
        f"Result: **{'pass' if passed else 'FAIL'}** (every lost, duplicated and differing cell must be 0).",
        "",
        "| " + " | ".join(title for _, title in COLUMNS) + " |",
        "|" + "|".join("---" for _ in COLUMNS) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(cell(row.get(key)) for key, _ in COLUMNS) + " |")
    failing = [r for r in rows if r["lost"] or r["duplicated_effects"] or r["differing"]]
    if failing:
        lines += ["", "## Details of the failing runs", ""]
        for row in failing:
            lines += [f"### {row['fault']} × {row['target']}", "", "```json", row.get("details", ""), "```", ""]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str]) -> None:
    repo = Path(__file__).resolve().parents[2]
    rows = json.loads(Path(argv[1] if len(argv) > 1 else repo / ".run" / "chaos-results.json").read_text())
    out = Path(argv[2]) if len(argv) > 2 else repo / "docs" / "chaos-report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(rows, profile=rows[0].get("profile", "long") if rows else "long"))
    print(out)


if __name__ == "__main__":
    main(sys.argv)
