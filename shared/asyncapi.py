"""Who reads and writes which topic (the access matrix), and one AsyncAPI 3.0 document per service made from it.

The matrix is the single source for three things that must agree: the Kafka ACLs of each service's user
(`broadsheet acls apply`, deploy/k8s KafkaUsers), the AsyncAPI documents in deploy/asyncapi, and the lag the
operator's `broadsheet status` reports per consumer group.

The documents are generated from the code: FastStream's own AsyncAPI specification of the service's broker
gives the info block, the server and its security scheme and the descriptions of the declared subscribers and
publishers; every topic of the matrix becomes a channel whose messages carry the pydantic JSON schema of their
contract and the record key (the article guid, UTF-8). `broadsheet asyncapi gen` writes them; a contract test
fails when the committed files drift from the code.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from shared import topics
from shared.contracts.articles import ArticleKilled, ArticlePublished, ArticleWithdrawn
from shared.contracts.comments import (
    CommentDecided,
    CommentReported,
    CommentSubmitted,
    ModerationAction,
    ModerationBan,
    ModerationBanLifted,
    ModerationPremoderation,
    SurgeAlert,
)
from shared.contracts.deadletter import HEADER_PREFIX, DeadLetter
from shared.contracts.drafts import NinjsDraft
from shared.contracts.related import RelatedLinksUpdated

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"
DOCUMENT_SERVER = "broadsheet-kafka-bootstrap:9092"
DEFAULT_OUT_DIR = Path(__file__).resolve().parents[1] / "deploy" / "asyncapi"


@dataclass(frozen=True)
class Access:
    """What one service's Kafka user may do. `group_reads` are the topics its consumer group commits on."""

    reads: tuple[str, ...]
    writes: tuple[str, ...]
    group_reads: tuple[str, ...]


ACCESS: dict[str, Access] = {
    "ingest": Access(
        reads=(topics.DRAFTS, topics.ARTICLES),
        # the HTTP gateway produces what it accepts to the drafts topic, like any newsroom system
        writes=(topics.DRAFTS, topics.ARTICLES, topics.dead_letter_topic("ingest")),
        group_reads=(topics.DRAFTS,),
    ),
    "related": Access(
        reads=(topics.ARTICLES, topics.RELATED),
        writes=(topics.RELATED, topics.dead_letter_topic("related")),
        group_reads=(topics.ARTICLES,),
    ),
    "comments": Access(
        # its own decisions are read back only to rebuild its Redis view from the log (services/comments/recovery.py)
        reads=(topics.COMMENT_SUBMISSIONS, topics.ARTICLES, topics.COMMENT_DECISIONS),
        # moderators' actions go through the submissions topic, so each comment has one writer of decisions
        writes=(topics.COMMENT_SUBMISSIONS, topics.COMMENT_DECISIONS, topics.DESK_ALERTS,
                topics.dead_letter_topic("comments")),
        group_reads=(topics.COMMENT_SUBMISSIONS, topics.ARTICLES),
    ),
    "publisher": Access(
        reads=(topics.ARTICLES, topics.RELATED, topics.COMMENT_DECISIONS),
        writes=(topics.COMMENT_SUBMISSIONS, topics.dead_letter_topic("publisher")),
        group_reads=(topics.ARTICLES, topics.RELATED, topics.COMMENT_DECISIONS),
    ),
}

PAYLOADS: dict[str, tuple[type[BaseModel], ...]] = {
    topics.DRAFTS: (NinjsDraft,),
    topics.ARTICLES: (ArticlePublished, ArticleWithdrawn, ArticleKilled),
    topics.RELATED: (RelatedLinksUpdated,),
    topics.COMMENT_SUBMISSIONS: (
        CommentSubmitted, CommentReported, ModerationAction, ModerationBan, ModerationBanLifted,
        ModerationPremoderation,
    ),
    topics.COMMENT_DECISIONS: (CommentDecided,),
    topics.DESK_ALERTS: (SurgeAlert,),
}
"""The contract(s) of each topic's values. Dead-letter topics carry the original bytes instead (see below)."""

KEY_SCHEMA: dict[str, Any] = {
    "type": "string",
    "description": "the article guid, UTF-8 (all records of one story share a partition, in order)",
}
DEAD_LETTER_PAYLOAD: dict[str, Any] = {
    "description": "the original record value, byte for byte, as it was read from the source topic",
    "type": "string",
    "format": "binary",
    "contentEncoding": "binary",
}


def service_topics(service: str) -> list[str]:
    access = ACCESS[service]
    return list(dict.fromkeys((*access.reads, *access.writes)))


def channel_id(topic: str) -> str:
    return topic.replace(".", "_")


def message_id(model: type[BaseModel]) -> str:
    return model.__name__


def dead_letter_headers_schema() -> dict[str, Any]:
    """The `dlq-*` headers: one string per field of `DeadLetter` (what a redrive needs to find the source)."""
    properties: dict[str, Any] = {}
    for name, info in DeadLetter.model_fields.items():
        header = f"{HEADER_PREFIX}{name.replace('_', '-')}"
        properties[header] = {"type": "string", "description": info.description or name.replace("_", " ")}
    properties["redriven-from"] = {
        "type": "string",
        "description": "on a re-driven record in the source topic: `<dead-letter topic>:<partition>:<offset>`",
    }
    return {
        "type": "object",
        "description": "reason and origin of the dead letter; the source record's own headers are kept as well",
        "properties": properties,
        "required": [f"{HEADER_PREFIX}{n}" for n in ("reason-code", "reason", "source-topic",
                                                       "source-partition", "source-offset", "consumer")],
    }


def collect_schemas(models: Sequence[type[BaseModel]]) -> dict[str, Any]:
    """JSON schemas of the contracts, with nested models as shared components."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
        for name, definition in schema.pop("$defs", {}).items():
            schemas.setdefault(name, definition)
        schemas[model.__name__] = schema
    return schemas


def faststream_document(service: str) -> dict[str, Any]:
    """FastStream's AsyncAPI 3.0 document of the service's real broker (info, server, security, descriptions)."""
    from faststream.specification import AsyncAPI

    broker = build_broker(service)
    spec = AsyncAPI(
        broker,
        title=f"Broadsheet {service}",
        version="1.0.0",
        description=SERVICE_DESCRIPTIONS[service],
        schema_version=ASYNCAPI_VERSION,
    )
    document: dict[str, Any] = json.loads(spec.to_specification().to_json())
    return document


SERVICE_DESCRIPTIONS = {
    "ingest": "Turns newsroom drafts (ninjs) into article lifecycle events; rejects what it cannot publish.",
    "related": "Computes the Check Also links of every article and publishes the latest per article.",
    "comments": "Moderates reader comments and publishes the decisions; alerts the desk on comment surges.",
    "publisher": "Renders and serves the site from article, related and comment events; submits reader comments.",
}


def document_settings(service: str) -> dict[str, Any]:
    """Settings for the documented deployment (never the caller's environment, so the output is stable)."""
    return {
        "environment": "development",
        "kafka_bootstrap_servers": DOCUMENT_SERVER,
        "kafka_security_protocol": "SASL_PLAINTEXT",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": f"broadsheet-{service}",
        "kafka_sasl_password": "documented-not-used",
        "kafka_topic_prefix": "",
        "instance_id": None,
    }


def build_broker(service: str) -> Any:
    """The broker the service's app declares, subscribers and publishers included (nothing is connected)."""
    factories: dict[str, Callable[[], Any]] = {
        "ingest": _ingest_app,
        "related": _related_app,
        "comments": _comments_app,
        "publisher": _publisher_app,
    }
    app = factories[service]()
    return app.lifespan_app.broker


def _ingest_app() -> Any:
    from services.ingest.app import create_app
    from services.ingest.config import IngestSettings

    return create_app(IngestSettings(**document_settings("ingest")))


def _related_app() -> Any:
    from services.related.app import create_app
    from services.related.config import RelatedSettings

    return create_app(RelatedSettings(**document_settings("related")))


def _comments_app() -> Any:
    from services.comments.app import create_app
    from services.comments.config import CommentsSettings

    return create_app(CommentsSettings(**document_settings("comments")))


def _publisher_app() -> Any:
    from services.publisher.app import create_app
    from services.publisher.config import PublisherSettings

    app, _reader = create_app(PublisherSettings(**document_settings("publisher")))
    return app


def _descriptions(faststream: Mapping[str, Any]) -> dict[tuple[str, str], str]:
    """(topic, action) → the description the code gave the subscriber or publisher of that topic."""
    found: dict[tuple[str, str], str] = {}
    channels = faststream.get("channels", {})
    for operation in faststream.get("operations", {}).values():
        ref = str(operation.get("channel", {}).get("$ref", ""))
        channel = channels.get(ref.rsplit("/", 1)[-1], {})
        description = channel.get("description") or operation.get("description")
        address = channel.get("address")
        if description and address:
            found.setdefault((str(address), str(operation.get("action"))), str(description))
    return found


def generate(service: str, *, faststream: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of one service."""
    source = dict(faststream if faststream is not None else faststream_document(service))
    access = ACCESS[service]
    described = _descriptions(source)
    specs = {spec.name: spec for spec in topics.TOPICS}
    group = f"broadsheet-{service}"

    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    models: list[type[BaseModel]] = []
    for topic in service_topics(service):
        spec = specs[topic]
        channel_messages: dict[str, Any] = {}
        if topic in PAYLOADS:
            for model in PAYLOADS[topic]:
                models.append(model)
                messages[message_id(model)] = {
                    "name": message_id(model),
                    "title": model.__name__,
                    "summary": (model.__doc__ or model.__name__).strip().splitlines()[0],
                    "contentType": "application/json",
                    "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
                    "bindings": {"kafka": {"key": KEY_SCHEMA, "bindingVersion": KAFKA_BINDING_VERSION}},
                }
                channel_messages[message_id(model)] = {"$ref": f"#/components/messages/{message_id(model)}"}
        else:
            name = f"DeadLetter_{service}"
            messages[name] = {
                "name": name,
                "title": f"Dead letter of {service}",
                "summary": "a record the service could not process, as it was read, with the reason in headers",
                "contentType": "application/octet-stream",
                "headers": dead_letter_headers_schema(),
                "payload": DEAD_LETTER_PAYLOAD,
                "bindings": {"kafka": {"key": KEY_SCHEMA, "bindingVersion": KAFKA_BINDING_VERSION}},
            }
            channel_messages[name] = {"$ref": f"#/components/messages/{name}"}
        cid = channel_id(topic)
        channels[cid] = {
            "address": topic,
            "title": topic,
            "description": spec.description,
            "messages": channel_messages,
            "bindings": {
                "kafka": {
                    "topic": topic,
                    "topicConfiguration": _topic_configuration(spec.config),
                    "bindingVersion": KAFKA_BINDING_VERSION,
                }
            },
        }
        refs = [{"$ref": f"#/channels/{cid}/messages/{m}"} for m in channel_messages]
        if topic in access.reads:
            operation: dict[str, Any] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{service} reads {topic}",
                "messages": refs,
            }
            if description := described.get((topic, "receive")):
                operation["description"] = description
            if topic in access.group_reads:
                operation["bindings"] = {
                    "kafka": {
                        "groupId": {"type": "string", "enum": [group]},
                        "bindingVersion": KAFKA_BINDING_VERSION,
                    }
                }
            operations[f"receive_{cid}"] = operation
        if topic in access.writes:
            operation = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{cid}"},
                "summary": f"{service} writes {topic}",
                "messages": refs,
            }
            if description := described.get((topic, "send")):
                operation["description"] = description
            operations[f"send_{cid}"] = operation

    components: dict[str, Any] = {
        "messages": dict(sorted(messages.items())),
        "schemas": dict(sorted(collect_schemas(models).items())),
    }
    security_schemes = source.get("components", {}).get("securitySchemes")
    if security_schemes:
        components["securitySchemes"] = security_schemes
    info = dict(source.get("info", {}))
    info["title"] = f"Broadsheet {service}"
    info["description"] = SERVICE_DESCRIPTIONS[service]
    servers = {
        "cluster" if name == "development" else name: {**server, "description": "the Broadsheet Kafka cluster"}
        for name, server in dict(source.get("servers", {})).items()
    }
    channels = {
        cid: {**channel, "servers": [{"$ref": f"#/servers/{name}"} for name in servers]}
        for cid, channel in channels.items()
    }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": f"urn:broadsheet:{service}",
        "info": info,
        "defaultContentType": "application/json",
        "servers": servers,
        "channels": channels,
        "operations": operations,
        "components": components,
    }


def _topic_configuration(config: Mapping[str, str]) -> dict[str, Any]:
    """The Kafka binding's view of the topic settings `ensure_topics` applies."""
    out: dict[str, Any] = {}
    if "cleanup.policy" in config:
        out["cleanup.policy"] = config["cleanup.policy"].split(",")
    if "retention.ms" in config:
        out["retention.ms"] = int(config["retention.ms"])
    if "retention.bytes" in config:
        out["retention.bytes"] = int(config["retention.bytes"])
    if "max.message.bytes" in config:
        out["max.message.bytes"] = int(config["max.message.bytes"])
    return out


def to_yaml(document: Mapping[str, Any]) -> str:
    import yaml

    header = "# Generated by `broadsheet asyncapi gen` from the code; do not edit by hand.\n"
    return header + yaml.safe_dump(dict(document), sort_keys=False, allow_unicode=True, width=120)


def write_all(out_dir: Path = DEFAULT_OUT_DIR, services: Sequence[str] = topics.SERVICES) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for service in services:
        path = out_dir / f"{service}.yaml"
        path.write_text(to_yaml(generate(service)), encoding="utf-8")
        written.append(path)
    return written
