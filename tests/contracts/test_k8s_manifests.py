"""The Kubernetes manifests (deploy/k8s): schema-valid for the cluster, and shaped the way Broadsheet runs.

Both overlays are rendered with kustomize and validated by kubeconform in strict mode against schemas kept
offline: the built-in kinds' schemas are generated from the Kubernetes release's OpenAPI document by
deploy/tools/install.sh, the custom resources' (KEDA, Strimzi) are in deploy/schemas/. A deliberately
broken copy must fail, so a validator that silently accepts everything cannot pass.

The tools are built with Go on first use (deploy/tools/install.sh). When they cannot be built the tests
fail with the reason; set BROADSHEET_SKIP_K8S=1 to skip them explicitly instead.
"""

from __future__ import annotations

import copy
import importlib
import inspect
import json
import os
import re
import shutil
import string
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml

from shared.asyncapi import ACCESS as CODE_ACCESS
from shared.settings import ServiceSettings
from shared.topics import TOPICS
from tests.support.metrics import exported_series
from tests.support.stack import free_port

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
CRD_SCHEMAS = ROOT / "deploy" / "schemas"
INSTALL = ROOT / "deploy" / "tools" / "install.sh"
DASHBOARD = ROOT / "deploy" / "grafana" / "broadsheet-dashboard.json"
OVERLAYS = ("dev", "prod")
SCHEMA_FILE = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

PORTS = {"publisher": 8080, "ingest": 8081, "comments": 8082, "related": 8083}
LAG_SCALED = {"ingest", "related", "comments"}
MAX_REPLICAS = 12  # partitions per topic: a 13th consumer would sit idle
ACCESS = {  # the one access matrix, from the code
    service: ({*access.reads}, {*access.writes}) for service, access in CODE_ACCESS.items()
}
REDIS_KEYS = {
    "ingest": {"bs:ingest:*"},
    "related": {"bs:related:*"},
    "comments": {"bs:comments:*"},
    # pages, article state, the site's control keys, and namespaces built by a rebuild (bs~<time>)
    "publisher": {"bs:pub:*", "bs:page:*", "bs:site:*", "bs~*"},
}
# Keys of the operator-created Secret `<service>-secrets` (deploy/k8s/README.md).
SECRET_KEYS = {
    "ingest": {"REDIS_URL", "INGEST_TOKEN", "SUPERDESK_PUSH_KEY"},
    "related": {"REDIS_URL"},
    "comments": {"REDIS_URL", "MODERATION_TOKEN", "COMMENTS_HASH_KEY"},
    "publisher": {"REDIS_URL", "COMMENT_FORM_SECRET"},
}
SECRET_LIKE = re.compile(r"(PASSWORD|TOKEN|SECRET|_KEY$|^REDIS_URL$)")
TOOL_TIMEOUT = 1200  # the first build compiles kustomize and kubeconform from source


# --- tools ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    kustomize: str
    kubeconform: str
    k8s_schemas: str

    def render(self, path: Path) -> str:
        result = run([self.kustomize, "build", str(path)])
        if result.returncode != 0:
            pytest.fail(f"kustomize build {path.relative_to(ROOT)} failed:\n{result.stderr}")
        return result.stdout

    def validate(self, manifests: str) -> subprocess.CompletedProcess[str]:
        return run(
            [
                self.kubeconform,
                "-strict",
                "-summary",
                "-schema-location",
                f"{self.k8s_schemas}/{SCHEMA_FILE}",
                "-schema-location",
                f"{CRD_SCHEMAS}/{SCHEMA_FILE}",
                "-",
            ],
            stdin=manifests,
        )


def run(argv: list[str], stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(scope="module")
def tools() -> Tools:
    if os.environ.get("BROADSHEET_SKIP_K8S") == "1":
        pytest.skip("BROADSHEET_SKIP_K8S=1: Kubernetes manifest validation skipped on request")
    try:
        result = run(["bash", str(INSTALL)], timeout=TOOL_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"deploy/tools/install.sh did not finish within {TOOL_TIMEOUT} s")
    if result.returncode != 0:
        pytest.fail(
            "deploy/tools/install.sh could not provide kustomize, kubeconform and the Kubernetes schemas "
            f"(set BROADSHEET_SKIP_K8S=1 to skip these tests on purpose):\n{result.stderr[-4000:]}"
        )
    values = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    return Tools(values["KUSTOMIZE"], values["KUBECONFORM"], values["K8S_SCHEMAS"])


@pytest.fixture(scope="module")
def rendered(tools: Tools) -> dict[str, str]:
    return {overlay: tools.render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="module")
def base(tools: Tools) -> list[dict[str, Any]]:
    return documents(tools.render(K8S / "base"))


def documents(text: str) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    match = re.search(
        r"(\d+) resources? found.*Valid: (\d+), Invalid: (\d+), Errors: (\d+), Skipped: (\d+)", result.stdout
    )
    assert match, f"no kubeconform summary in:\n{result.stdout}\n{result.stderr}"
    found, valid, invalid, errors, skipped = map(int, match.groups())
    return {"found": found, "valid": valid, "invalid": invalid, "errors": errors, "skipped": skipped}


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, str]) -> tuple[str, list[dict[str, Any]]]:
    return request.param, documents(rendered[request.param])


def containers(deployment: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield from deployment["spec"]["template"]["spec"]["containers"]


def service_of(deployment: dict[str, Any]) -> str:
    return deployment["metadata"]["labels"]["app.kubernetes.io/component"]


# --- schema validation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OVERLAYS)
def test_overlay_is_valid_for_the_cluster(tools, rendered, name) -> None:
    result = tools.validate(rendered[name])
    counts = summary(result)
    assert result.returncode == 0, result.stdout + result.stderr
    assert counts["found"] == len(documents(rendered[name])) > 0
    assert counts["valid"] == counts["found"], f"every resource is checked against a schema: {counts}"


def broken_copies(docs: list[dict[str, Any]]) -> Iterator[tuple[str, str, list[dict[str, Any]]]]:
    """(what, text kubeconform must print, manifests with that one mistake)."""

    def mutated(kind: str, change: Any) -> list[dict[str, Any]]:
        out = copy.deepcopy(docs)
        target = next(doc for doc in out if doc["kind"] == kind)
        change(target)
        return out

    def misspell_replicas(doc: dict[str, Any]) -> None:
        doc["spec"]["replicaz"] = 3

    def port_as_text(doc: dict[str, Any]) -> None:
        doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"

    def misspell_probe(doc: dict[str, Any]) -> None:
        probe = doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
        probe["httpGet"]["paht"] = probe["httpGet"].pop("path")

    def bad_operation(doc: dict[str, Any]) -> None:
        doc["spec"]["authorization"]["acls"][0]["operations"] = ["Reed"]

    def replicas_as_text(doc: dict[str, Any]) -> None:
        doc["spec"]["maxReplicaCount"] = "twelve"

    def misspell_topic_field(doc: dict[str, Any]) -> None:
        doc["spec"]["partition"] = 12

    yield "a misspelt Deployment field", "replicaz", mutated("Deployment", misspell_replicas)
    yield "a string where a port number goes", "containerPort", mutated("Deployment", port_as_text)
    yield "a misspelt probe field", "paht", mutated("Deployment", misspell_probe)
    yield "an unknown Kafka ACL operation", "/operations/0", mutated("KafkaUser", bad_operation)
    yield "a string where a replica count goes", "maxReplicaCount", mutated("ScaledObject", replicas_as_text)
    yield "a misspelt KafkaTopic field", "partition", mutated("KafkaTopic", misspell_topic_field)


def test_a_broken_manifest_fails(tools, rendered) -> None:
    docs = documents(rendered["prod"])
    for what, needle, broken in broken_copies(docs):
        result = tools.validate(yaml.safe_dump_all(broken))
        assert result.returncode != 0, f"kubeconform accepted {what}"
        counts = summary(result)
        assert counts["invalid"] == 1, (what, counts)
        assert counts["valid"] == len(docs) - 1, (what, counts)
        assert needle in result.stdout, f"{what}: the error should name {needle!r}:\n{result.stdout}"


def test_a_kind_without_a_schema_is_an_error_not_a_skip(tools) -> None:
    manifest = "apiVersion: example.org/v1\nkind: Widget\nmetadata:\n  name: w\nspec: {}\n"
    result = tools.validate(manifest)
    assert result.returncode != 0
    assert summary(result)["errors"] == 1
    assert "could not find schema" in result.stdout


# --- workloads ------------------------------------------------------------------------------------------


def test_every_service_has_its_deployment_and_companions(overlay) -> None:
    _, docs = overlay
    deployments = of_kind(docs, "Deployment")
    assert set(deployments) == set(PORTS)
    for kind in ("Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceAccount"):
        assert set(of_kind(docs, kind)) == set(PORTS), kind
    for name, deployment in deployments.items():
        selector = deployment["spec"]["selector"]["matchLabels"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        service = of_kind(docs, "Service")[name]
        assert service["spec"]["selector"].items() <= labels.items()
        assert service["spec"]["ports"] == [
            {"name": "http", "port": PORTS[name], "targetPort": "http", "protocol": "TCP"}
        ]
        assert of_kind(docs, "PodDisruptionBudget")[name]["spec"]["selector"]["matchLabels"] == selector
        assert of_kind(docs, "NetworkPolicy")[name]["spec"]["podSelector"]["matchLabels"] == selector
        assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == name


def test_deployments_probe_health_and_readiness_on_their_port(overlay) -> None:
    _, docs = overlay
    for name, deployment in of_kind(docs, "Deployment").items():
        (container,) = containers(deployment)
        assert container["args"] == [f"services.{name}"]
        assert container["ports"] == [{"name": "http", "containerPort": PORTS[name], "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}, name
        # the publisher's pods serve readers from Redis alone, and stay in the Service while Kafka is down
        readiness = "/readyz/readers" if name == "publisher" else "/readyz"
        assert container["readinessProbe"]["httpGet"] == {"path": readiness, "port": "http"}, name
        startup = container.get("startupProbe")
        if startup:
            assert startup["httpGet"]["path"] == "/healthz"


def test_deployments_run_unprivileged_on_a_read_only_root(overlay) -> None:
    _, docs = overlay
    for name, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in pod["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name}: /tmp must be a writable emptyDir"


def test_deployments_drain_and_have_bounded_resources(overlay) -> None:
    _, docs = overlay
    for name, deployment in of_kind(docs, "Deployment").items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] > 25, f"{name}: draining on SIGTERM takes up to 25 s"
        assert "replicas" not in deployment["spec"], f"{name}: the autoscaler owns the replica count"
        for container in pod["containers"]:
            resources = container["resources"]
            for part in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[part]), f"{name} {part}"


def test_secrets_are_referenced_never_inlined(overlay) -> None:
    _, docs = overlay
    for name, deployment in of_kind(docs, "Deployment").items():
        (container,) = containers(deployment)
        for variable in container.get("env", []):
            if SECRET_LIKE.search(variable["name"]):
                assert "value" not in variable, f"{name}: {variable['name']} is inlined"
                assert "secretKeyRef" in variable["valueFrom"], f"{name}: {variable['name']}"
        refs = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
        assert refs == [f"{name}-secrets"], f"{name}: tokens and REDIS_URL come from the operator's Secret"
        env = {v["name"]: v for v in container["env"]}
        assert env["KAFKA_SASL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"broadsheet-{name}",
            "key": "password",
        }, f"{name}: the Kafka password is the one Strimzi generates for the KafkaUser"
        assert env["INSTANCE_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for configmap in of_kind(docs, "ConfigMap").values():
        for key in configmap.get("data", {}):
            assert not SECRET_LIKE.search(key) or key == "KAFKA_SASL_MECHANISM", f"{key} in a ConfigMap"


def test_base_holds_no_secret_material(base) -> None:
    for doc in base:
        if doc["kind"] == "Secret":
            assert not doc.get("data"), f"Secret {doc['metadata']['name']}"
            assert not doc.get("stringData"), f"Secret {doc['metadata']['name']}"
    for path in K8S.rglob("*.yaml"):
        for doc in documents(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict) and doc.get("kind") == "Secret":
                assert not doc.get("data"), path
                assert not doc.get("stringData"), path


def effective_config(docs: list[dict[str, Any]], deployment: dict[str, Any]) -> dict[str, str]:
    """Environment from the ConfigMaps and literal values (secret values are not known here)."""
    configmaps = of_kind(docs, "ConfigMap")
    (container,) = containers(deployment)
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        if "configMapRef" in source:
            env.update(configmaps[source["configMapRef"]["name"]]["data"])
    env.update({v["name"]: v["value"] for v in container.get("env", []) if "value" in v})
    return env


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class a service reads its environment with (the ServiceSettings subclass in its config)."""
    module = importlib.import_module(f"services.{service}.config")
    (cls,) = [
        c
        for _, c in inspect.getmembers(module, inspect.isclass)
        if issubclass(c, ServiceSettings) and c.__module__ == module.__name__
    ]
    return cls


def test_configuration_is_what_the_settings_accept(overlay, monkeypatch) -> None:
    name, docs = overlay
    for service, deployment in of_kind(docs, "Deployment").items():
        env = effective_config(docs, deployment)
        assert env[f"{service.upper()}_HTTP_PORT"] == str(PORTS[service])
        assert env["HTTP_HOST"] == "0.0.0.0"
        assert env["LOG_FORMAT"] == "json"
        assert env["REDIS_NAMESPACE"] == "bs"
        assert env["KAFKA_PARTITIONS"] == "12"
        assert env["KAFKA_SASL_USERNAME"] == f"broadsheet-{service}"
        assert env["ENVIRONMENT"] == ("production" if name == "prod" else "development")
        cls = settings_class(service)
        unknown = {key for key in env if key.lower() not in cls.model_fields}
        assert not unknown, f"{service} does not read {sorted(unknown)}"
        assert {key.lower() for key in SECRET_KEYS[service]} <= set(cls.model_fields), service
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        # Stand-ins for what the Secrets hold: the settings must accept the whole environment.
        monkeypatch.setenv("KAFKA_SASL_PASSWORD", "from-the-strimzi-secret")
        for key in SECRET_KEYS[service]:
            monkeypatch.setenv(key, "redis://u:p@redis:6379/0" if key == "REDIS_URL" else f"operator-{key.lower()}")
        settings = cls()
        if name == "prod":
            assert settings.kafka_security_protocol == "SASL_SSL"
            assert settings.kafka_replication_factor == 3
            (container,) = containers(deployment)
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
            ca_dir = str(Path(env["KAFKA_SSL_CAFILE"]).parent)
            assert "secret" in volumes[mounts[ca_dir]], f"{service}: the Kafka CA must be mounted"
        else:
            assert settings.kafka_security_protocol.startswith("SASL")


# --- scaling --------------------------------------------------------------------------------------------


def test_consumers_scale_on_lag_and_the_web_tier_on_cpu(overlay) -> None:
    name, docs = overlay
    scaled = of_kind(docs, "ScaledObject")
    hpas = of_kind(docs, "HorizontalPodAutoscaler")
    auths = of_kind(docs, "TriggerAuthentication")
    assert set(scaled) == LAG_SCALED
    assert set(hpas) == {"publisher"}
    for service, obj in scaled.items():
        spec = obj["spec"]
        assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": service}
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= MAX_REPLICAS
        if name == "prod":
            assert spec["maxReplicaCount"] == MAX_REPLICAS
        (trigger,) = spec["triggers"]
        assert trigger["type"] == "kafka"
        metadata = trigger["metadata"]
        assert metadata["consumerGroup"] == f"broadsheet-{service}"
        assert int(metadata["lagThreshold"]) > 0
        assert metadata["allowIdleConsumers"] == "false"
        assert metadata["tls"] == ("enable" if name == "prod" else "disable")
        auth = auths[trigger["authenticationRef"]["name"]]["spec"]
        assert {"parameter": "password", "name": f"broadsheet-{service}", "key": "password"} in auth["secretTargetRef"]
    hpa = hpas["publisher"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "publisher"
    (metric,) = hpa["metrics"]
    assert metric["resource"]["name"] == "cpu"
    assert metric["resource"]["target"] == {"type": "Utilization", "averageUtilization": 70}


# --- Kafka ----------------------------------------------------------------------------------------------


def test_every_topic_is_a_kafkatopic_like_the_code_creates(overlay) -> None:
    name, docs = overlay
    declared = {doc["spec"]["topicName"]: doc for doc in of_kind(docs, "KafkaTopic").values()}
    assert set(declared) == {spec.name for spec in TOPICS}
    for spec in TOPICS:
        topic = declared[spec.name]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "broadsheet"
        assert topic["spec"]["partitions"] == 12
        config = {key: str(value) for key, value in topic["spec"].get("config", {}).items()}
        assert spec.config.items() <= config.items(), spec.name
        if name == "prod":
            assert topic["spec"]["replicas"] == 3, spec.name
            assert config["min.insync.replicas"] == "2", spec.name
        else:
            assert topic["spec"]["replicas"] == 1, spec.name
    assert declared["broadsheet.related"]["spec"]["config"]["cleanup.policy"] == "compact"


def acl_grants(user: dict[str, Any]) -> set[tuple[str, str, str]]:
    grants = set()
    for acl in user["spec"]["authorization"]["acls"]:
        resource = acl["resource"]
        assert acl.get("type", "allow") == "allow"
        assert resource.get("patternType", "literal") == "literal", "prefix grants would reach other topics"
        assert acl.get("host", "*") == "*"
        for operation in acl["operations"]:
            grants.add((resource["type"], resource["name"], operation))
    return grants


def test_kafka_users_get_exactly_the_access_matrix(overlay) -> None:
    _, docs = overlay
    users = of_kind(docs, "KafkaUser")
    assert set(users) == {f"broadsheet-{service}" for service in ACCESS}
    for service, (reads, writes) in ACCESS.items():
        user = users[f"broadsheet-{service}"]
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == "broadsheet"
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        expected = (
            {("topic", topic, "Read") for topic in reads}
            | {("topic", topic, "Write") for topic in writes}
            | {("topic", topic, "Describe") for topic in reads | writes}
            | {("group", f"broadsheet-{service}", "Read")}
        )
        assert acl_grants(user) == expected, service


# --- Redis ----------------------------------------------------------------------------------------------


def test_redis_acl_template_confines_each_service_to_its_prefix(base) -> None:
    template = of_kind(base, "ConfigMap")
    (configmap,) = [doc for name, doc in template.items() if name.startswith("redis-acl-template")]
    lines = [
        line.split()
        for line in configmap["data"]["users.acl.template"].splitlines()
        if line.strip() and not line.startswith("#")
    ]
    users = {words[1]: words[2:] for words in lines if words[0] == "user"}
    assert users.pop("default") == ["off"], "the default (password-less) user must be off"
    assert set(users) == set(REDIS_KEYS)
    for service, rules in users.items():
        assert "on" in rules
        passwords = [rule[1:] for rule in rules if rule.startswith(">")]
        assert passwords == [f"${{{service.upper()}_REDIS_PASSWORD}}"], f"{service}: a placeholder, not a password"
        assert "resetkeys" in rules
        assert rules.index("resetkeys") < min(i for i, r in enumerate(rules) if r.startswith("~"))
        assert {rule[1:] for rule in rules if rule.startswith("~")} == REDIS_KEYS[service], service
        assert "-@dangerous" in rules


# --- the dashboard --------------------------------------------------------------------------------------

DASHBOARD_METRICS = {
    "broadsheet_messages_total",
    "broadsheet_handler_seconds_bucket",
    "broadsheet_consumer_lag",
    "broadsheet_freshness_seconds_bucket",
    "broadsheet_http_requests_total",
    "broadsheet_http_request_seconds_bucket",
}



def test_grafana_dashboard_reads_the_services_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = dashboard["panels"]
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    exprs = [target["expr"] for panel in panels for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bbroadsheet_[a-z_]+", expr)}
    assert used == DASHBOARD_METRICS
    assert used <= exported_series().keys(), f"panels read series no service exports: {used - exported_series().keys()}"
    outcomes = {o for expr in exprs for o in re.findall(r"outcome!?=~?\"([a-z_|]+)\"", expr)}
    # the runner's own outcomes, and the words several handlers return: never one no code writes ("failed")
    words = {word for group in outcomes for word in group.split("|")}
    assert words == {"retried", "dead_lettered", "stale", "duplicate"}
    for panel in panels:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_redis_starts_on_the_rendered_acl_file_and_each_user_reaches_only_its_prefix(tmp_path) -> None:
    """The operator's recipe (envsubst into the Secret) gives a file a real Redis loads: Redis aborts at
    start-up on any line of an ACL file that is not a user, comments included."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (deploy/local/redis.sh installs it)")
    template = (ROOT / "deploy/k8s/base/redis/users.acl.template").read_text()
    passwords = {f"{service.upper()}_REDIS_PASSWORD": f"pw-{service}" for service in REDIS_KEYS}
    (tmp_path / "users.acl").write_text(string.Template(template).substitute(passwords))
    port = free_port()
    proc = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--aclfile", str(tmp_path / "users.acl")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        client = None
        for _ in range(100):
            if proc.poll() is not None:
                output = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"Redis refused the ACL file:\n{output[-2000:]}")
            try:
                client = redis.Redis(port=port, username="ingest", password="pw-ingest")
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        assert client is not None
        client.set("bs:ingest:probe", "1")
        with pytest.raises(redis.exceptions.NoPermissionError):
            client.set("bs:pub:probe", "1")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port).ping()  # the default user is off
    finally:
        proc.terminate()
        proc.wait(timeout=10)
