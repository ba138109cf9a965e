"""The committed AsyncAPI documents (deploy/asyncapi) are what the code generates, and they cover the matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from shared import asyncapi, topics

REPO = Path(__file__).resolve().parents[2]
OUT = REPO / "deploy" / "asyncapi"


@pytest.fixture(scope="module")
def generated() -> dict[str, str]:
    return {service: asyncapi.to_yaml(asyncapi.generate(service)) for service in topics.SERVICES}


@pytest.mark.parametrize("service", topics.SERVICES)
def test_committed_document_matches_the_code(service: str, generated: dict[str, str]) -> None:
    path = OUT / f"{service}.yaml"
    assert path.exists(), f"{path} is missing: run `broadsheet asyncapi gen`"
    assert path.read_text(encoding="utf-8") == generated[service], (
        f"{path} differs from what the code generates: run `broadsheet asyncapi gen` and commit the result"
    )


def resolve(document: dict[str, Any], ref: str) -> Any:
    node: Any = document
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


@pytest.mark.parametrize("service", topics.SERVICES)
def test_every_topic_of_the_access_matrix_is_documented_with_its_payload(service: str) -> None:
    document = yaml.safe_load((OUT / f"{service}.yaml").read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    assert document["servers"], "the server and its security come from FastStream's specification"
    channels = {c["address"]: c for c in document["channels"].values()}
    access = asyncapi.ACCESS[service]
    assert set(channels) == set(access.reads) | set(access.writes)
    for topic, channel in channels.items():
        assert channel["messages"], topic
        for ref in channel["messages"].values():
            message = resolve(document, ref["$ref"])
            assert message["bindings"]["kafka"]["key"]["type"] == "string"
            assert "guid" in message["bindings"]["kafka"]["key"]["description"]
            if topic.startswith("broadsheet.deadletter."):
                assert "dlq-reason-code" in message["headers"]["properties"]
                assert "dlq-source-offset" in message["headers"]["properties"]
                continue
            schema = resolve(document, message["payload"]["$ref"])
            assert schema["type"] == "object" and schema["properties"], (topic, message["name"])
        expected_models = {m.__name__ for m in asyncapi.PAYLOADS.get(topic, ())}
        if expected_models:
            assert set(channel["messages"]) == expected_models, topic

    actions = {(resolve(document, op["channel"]["$ref"])["address"], op["action"])
               for op in document["operations"].values()}
    assert actions == {(t, "receive") for t in access.reads} | {(t, "send") for t in access.writes}


def test_matrix_covers_every_topic_and_service() -> None:
    used = {t for a in asyncapi.ACCESS.values() for t in (*a.reads, *a.writes)}
    assert used == {spec.name for spec in topics.TOPICS}
    assert set(asyncapi.ACCESS) == set(topics.SERVICES)
    for access in asyncapi.ACCESS.values():
        assert set(access.group_reads) <= set(access.reads)


def test_drafts_payload_is_the_ninjs_contract() -> None:
    document = yaml.safe_load((OUT / "ingest.yaml").read_text(encoding="utf-8"))
    draft = document["components"]["schemas"]["NinjsDraft"]
    assert {"guid", "version", "headline", "body_html", "pubstatus"} <= set(draft["properties"])
