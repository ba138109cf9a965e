"""`broadsheet`: the operator's command line (topics, drafts, dead letters, status).

Long work shows a progress bar; every command reads the same settings (environment) as the services.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer
from aiokafka import AIOKafkaProducer
from rich.console import Console
from rich.progress import Progress

from shared import topics
from shared.kafka import security_for
from shared.settings import ServiceSettings

app = typer.Typer(help="Broadsheet operator commands", no_args_is_help=True, add_completion=False)
topics_app = typer.Typer(help="Kafka topics", no_args_is_help=True)
drafts_app = typer.Typer(help="Newsroom drafts", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(drafts_app, name="drafts")
console = Console(stderr=True)


def client_options(settings: ServiceSettings) -> dict[str, object]:
    """aiokafka client options (bootstrap, security) from the same settings the services use."""
    options: dict[str, object] = {"bootstrap_servers": settings.kafka_bootstrap_servers}
    security = security_for(settings)
    if security is not None:
        from faststream.kafka.security import parse_security

        options.update(parse_security(security))
    return options


@topics_app.command("create")
def topics_create(
    partitions: Annotated[int | None, typer.Option(help="partitions per topic (default from settings)")] = None,
) -> None:
    """Create every Broadsheet topic that does not exist yet (idempotent)."""
    settings = ServiceSettings()
    options = client_options(settings)
    bootstrap = str(options.pop("bootstrap_servers"))
    created = asyncio.run(
        topics.ensure_topics(
            bootstrap,
            prefix=settings.kafka_topic_prefix,
            partitions=partitions or settings.kafka_partitions,
            replication_factor=settings.kafka_replication_factor,
            client_options=options,
        )
    )
    for name in created:
        console.print(f"created {name}")
    console.print(f"{len(topics.TOPICS)} topics present ({len(created)} created)")


@topics_app.command("list")
def topics_list() -> None:
    """The topics Broadsheet uses, with what they hold."""
    settings = ServiceSettings()
    for spec in topics.TOPICS:
        typer.echo(f"{topics.with_prefix(settings.kafka_topic_prefix, spec.name)}\t{spec.description}")


def draft_files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*.json") if p.is_file())
    return [path]


async def produce_drafts(settings: ServiceSettings, files: list[Path]) -> int:
    producer = AIOKafkaProducer(
        acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024, linger_ms=5,
        **client_options(settings),
    )
    await producer.start()
    sent = 0
    try:
        topic = topics.with_prefix(settings.kafka_topic_prefix, topics.DRAFTS)
        with Progress(console=console, transient=False) as progress:
            task = progress.add_task("posting drafts", total=len(files))
            futures = []
            for file in files:
                raw = file.read_bytes()
                try:
                    guid = str(json.loads(raw).get("guid") or json.loads(raw).get("uri") or "")
                except (ValueError, AttributeError):
                    guid = ""
                futures.append(await producer.send(topic, raw, key=guid.encode() or None))
                progress.advance(task)
                sent += 1
            await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return sent


@drafts_app.command("post")
def drafts_post(path: Annotated[Path, typer.Argument(help="a ninjs JSON file or a folder of them")]) -> None:
    """Produce ninjs drafts to the newsroom.drafts topic, keyed by guid, as a newsroom system would."""
    files = draft_files(path)
    if not files:
        console.print(f"no .json drafts under {path}")
        raise typer.Exit(1)
    sent = asyncio.run(produce_drafts(ServiceSettings(), files))
    console.print(f"posted {sent} drafts")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
