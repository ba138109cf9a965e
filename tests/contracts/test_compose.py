"""docker-compose.yml and the image it builds: valid Compose, and shaped the way Broadsheet runs.

The file is validated against the Compose specification's own JSON schema (kept in deploy/schemas/), then
against the project's rules: every long-running service has a healthcheck, start order waits for health,
services that scale publish no fixed host port, and the environment matches what the settings accept.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from shared.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
COMPOSE_SCHEMA = ROOT / "deploy" / "schemas" / "compose-spec.json"

APP_SERVICES = {"publisher": 8080, "ingest": 8081, "comments": 8082, "related": 8083}
PORT_ENV = {name: f"{name.upper()}_HTTP_PORT" for name in APP_SERVICES}
# Secrets each service reads; a service gets no secret it does not use.
SECRETS = {
    "ingest": {"INGEST_TOKEN", "SUPERDESK_PUSH_KEY"},
    "related": set(),
    "comments": {"MODERATION_TOKEN"},
    "publisher": {"COMMENT_FORM_SECRET"},
}
ALL_SECRETS = set().union(*SECRETS.values())
# Reachable from the host (on an ephemeral port); related serves health and metrics only.
PUBLISHED = {"publisher", "ingest", "comments"}
INTERPOLATION = re.compile(r"\$\{(?P<name>[A-Z0-9_]+)(?::?-(?P<default>[^}]*))?\}")


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class a service reads its environment with (the ServiceSettings subclass in its config)."""
    module = importlib.import_module(f"services.{service}.config")
    (cls,) = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, ServiceSettings) and c.__module__ == module.__name__
    ]
    return cls


def interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set in the environment: the default."""
    return INTERPOLATION.sub(lambda m: m.group("default") or "", value)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(COMPOSE_SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: interpolate(str(value)) for key, value in env.items()}


def port_entries(service: dict[str, Any]) -> list[Any]:
    return list(service.get("ports") or [])


def published_host_port(entry: Any) -> str | None:
    """The fixed host port of a `ports:` entry, or None when Compose picks one."""
    if isinstance(entry, dict):
        published = entry.get("published")
        return None if published in (None, "") else str(published)
    text = str(entry).split("/", 1)[0]
    parts = text.split(":")
    if len(parts) == 1:
        return None
    host = parts[-2]  # "ip:host:container" or "host:container"; an empty host part means ephemeral
    return host or None


# --- the Compose specification --------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification(compose, validator) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("what", "mutate"),
    [
        ("a misspelt service key", lambda c: c["services"]["publisher"].update(helthcheck={"test": "true"})),
        (
            "a misspelt depends_on condition",
            lambda c: c["services"]["ingest"]["depends_on"]["kafka"].update(condition="service_healty"),
        ),
        ("a list where a mapping is required", lambda c: c["services"]["redis"].update(healthcheck=["ping"])),
    ],
)
def test_the_schema_rejects_a_broken_compose_file(compose, validator, what, mutate) -> None:
    broken = copy.deepcopy(compose)
    mutate(broken)
    assert list(validator.iter_errors(broken)), f"the Compose schema accepted {what}"


# --- infrastructure -------------------------------------------------------------------------------------


def test_kafka_is_a_pinned_single_node_kraft_broker_matching_the_local_one(compose) -> None:
    kafka = services(compose)["kafka"]
    image, _, tag = kafka["image"].partition(":")
    assert image == "apache/kafka"
    assert re.fullmatch(r"\d+\.\d+\.\d+", tag), f"pin an exact Kafka version, not {tag!r}"
    pom = (ROOT / "deploy" / "local" / "kafka" / "pom.xml").read_text(encoding="utf-8")
    local = re.search(r"<kafka.version>(.+?)</kafka.version>", pom)
    assert local is not None
    assert tag == local.group(1), "Compose and the test suite's broker (deploy/local) must run one version"
    env = environment(kafka)
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false", "topics are created explicitly, never implicitly"
    assert int(env["KAFKA_MESSAGE_MAX_BYTES"]) >= 2_200_000, "drafts may be up to 2 MiB"
    assert "kafka-broker-api-versions.sh" in json.dumps(kafka["healthcheck"]["test"])


def test_redis_is_redis_7_with_a_ping_healthcheck(compose) -> None:
    redis = services(compose)["redis"]
    assert redis["image"] == "redis:7-alpine"
    assert "redis-cli ping" in json.dumps(redis["healthcheck"]["test"])


def test_topics_are_created_once_before_any_service_starts(compose) -> None:
    topics = services(compose)["topics"]
    assert topics["command"] == ["shared.cli", "topics", "create"]
    assert topics["depends_on"] == {"kafka": {"condition": "service_healthy"}}
    assert str(topics.get("restart", "no")) == "no", "a one-shot job must not be restarted"
    for name in APP_SERVICES:
        dependency = services(compose)[name]["depends_on"]["topics"]
        assert dependency["condition"] == "service_completed_successfully", name


# --- the four services ----------------------------------------------------------------------------------


def test_every_long_running_service_has_a_healthcheck(compose) -> None:
    for name, service in services(compose).items():
        if name == "topics":
            continue  # one-shot: the others wait for it to complete, not to be healthy
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        assert check.get("test"), f"{name} has no healthcheck test"
        assert not check.get("disable"), f"{name} disables its healthcheck"


def test_start_order_waits_for_health_not_for_start(compose) -> None:
    for name, service in services(compose).items():
        depends_on = service.get("depends_on") or {}
        assert isinstance(depends_on, dict), f"{name}: depends_on must name a condition for each dependency"
        for dependency, spec in depends_on.items():
            expected = "service_completed_successfully" if dependency == "topics" else "service_healthy"
            assert spec.get("condition") == expected, f"{name} -> {dependency}"
    for name in APP_SERVICES:
        assert set(services(compose)[name]["depends_on"]) == {"kafka", "redis", "topics"}, name


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_runs_the_one_image_with_its_module(compose, name) -> None:
    service = services(compose)[name]
    topics = services(compose)["topics"]
    assert service["image"] == topics["image"], "one image for every service"
    build = service["build"]
    assert (build["context"] if isinstance(build, dict) else build) == "."
    assert service["command"] == [f"services.{name}"]


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_healthcheck_probes_its_own_healthz(compose, name) -> None:
    test = services(compose)[name]["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1:3] == ["python", "-c"], "the image has python, not curl"
    assert f"http://127.0.0.1:{APP_SERVICES[name]}/healthz" in test[3]
    assert "urllib" in test[3]


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_scaling_services_publish_no_fixed_host_port(compose, name) -> None:
    service = services(compose)[name]
    entries = port_entries(service)
    for entry in entries:
        assert published_host_port(entry) is None, (
            f"{name} publishes fixed host port {entry!r}; `--scale` would collide: use {APP_SERVICES[name]!r}"
        )
    container_ports = {int(str(e.get("target") if isinstance(e, dict) else e).split(":")[-1]) for e in entries}
    if name in PUBLISHED:
        assert container_ports == {APP_SERVICES[name]}
    else:
        assert not entries, f"{name} serves health and metrics only; it needs no host port"


def test_port_parsing_recognises_fixed_and_ephemeral_ports() -> None:
    assert published_host_port("8080") is None
    assert published_host_port(8080) is None
    assert published_host_port("8080:8080") == "8080"
    assert published_host_port("127.0.0.1:8080:8080") == "8080"
    assert published_host_port("127.0.0.1::8080") is None
    assert published_host_port({"target": 8080}) is None
    assert published_host_port({"target": 8080, "published": "8080"}) == "8080"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_environment_matches_the_settings(compose, name, monkeypatch) -> None:
    service = services(compose)[name]
    env = environment(service)
    assert env["HTTP_HOST"] == "0.0.0.0", "in a container the service must listen beyond loopback"
    assert env[PORT_ENV[name]] == str(APP_SERVICES[name])
    for other, variable in PORT_ENV.items():
        if other != name:
            assert variable not in env, f"{name} carries {other}'s port"
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert env["REDIS_URL"].startswith("redis://redis:6379")
    assert env["REDIS_NAMESPACE"] == "bs"
    assert env["LOG_FORMAT"] == "json"
    assert env["KAFKA_PARTITIONS"] == "12"
    assert {key for key in env if key in ALL_SECRETS} == SECRETS[name], "each service gets its own secrets only"
    for key in SECRETS[name]:
        assert f"${{{key}:-" in json.dumps(service["environment"]), f"{key} must be overridable from the shell"
    # Every variable is one the service reads, and the values are ones its settings accept.
    cls = settings_class(name)
    unknown = {key for key in env if key.lower() not in cls.model_fields}
    assert not unknown, f"{name} does not read {sorted(unknown)}"
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = cls()
    assert settings.kafka_partitions == 12
    assert settings.redis_namespace == "bs"


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_service_stops_gracefully_and_runs_locked_down(compose, name) -> None:
    service = services(compose)[name]
    grace = re.fullmatch(r"(\d+)s", str(service["stop_grace_period"]))
    assert grace, "stop_grace_period in seconds, e.g. 40s"
    assert int(grace.group(1)) > 25, "draining on SIGTERM takes up to 25 s"
    assert service.get("read_only") is True
    assert "/tmp" in service.get("tmpfs", [])
    assert service.get("cap_drop") == ["ALL"]


# --- the image ------------------------------------------------------------------------------------------


def test_dockerfile_builds_dependencies_before_code_and_runs_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    joined = "\n".join(instructions)
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim", joined, re.M)
    assert len(re.findall(r"^FROM ", joined, re.M)) >= 2, "multi-stage: the runtime image carries no build tools"
    deps = joined.index("uv sync --frozen --no-install-project --no-dev")
    code = joined.index("COPY services")
    assert joined.index("COPY pyproject.toml uv.lock") < deps < code, "dependency layer first, code second"
    user = re.findall(r"^USER (\S+)", joined, re.M)
    assert user, "the image must set USER"
    assert user[-1].split(":")[0] not in {"root", "0"}, "the image must not run as root"
    assert user[-1].split(":")[0].isdigit(), "a numeric uid lets Kubernetes check runAsNonRoot"
    assert 'ENTRYPOINT ["python", "-m"]' in joined
    assert 'CMD ["services.publisher"]' in joined


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "allow-list: everything is excluded unless named"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {"pyproject.toml", "uv.lock", "shared", "services"} <= allowed
    assert not allowed & {".venv", "tests", ".git", ".run"}
