"""Offline checks of the Kubernetes manifests in deploy/kubernetes/.

Every document is validated against the Kubernetes JSON schemas that `kubernetes-validate`
ships (strict: an unknown or misspelled field fails, as `kubectl apply --validate=strict` would).
Then what a user relies on and no schema can see: the settings are real settings with valid
values, the container runs a real `processor` command, the probes and the Service reach the
port the worker serves, each pod's instance id is its name and its state lives on its own
volume.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from processor import config
from processor.cli import _parser
from processor.runtime.loader import load_topology

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "deploy" / "kubernetes"
# The oldest Kubernetes release still widely run, and the newest the package knows.
KUBERNETES_VERSIONS = ("1.30", kubernetes_validate.latest_version())
LIVENESS_PATH = "/health/live"
READINESS_PATH = "/health/ready"
POD_NAME = "wordcount-0"  # what the downward API gives the first pod


def _documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert isinstance(document, dict), f"{path.name}: a document is not a mapping"
            documents.append(document)
    return documents


def _one(kind: str) -> dict[str, Any]:
    found = [d for d in _documents() if d["kind"] == kind]
    assert len(found) == 1, f"deploy/kubernetes/ has {len(found)} {kind}s, expected one"
    return found[0]


def _container() -> dict[str, Any]:
    containers = _one("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "the worker pod should run exactly one container"
    result: dict[str, Any] = containers[0]
    return result


def _pod_environment() -> dict[str, str]:
    """The container's environment as the worker sees it in pod POD_NAME."""
    container = _container()
    configmaps = {
        d["metadata"]["name"]: d["data"] for d in _documents() if d["kind"] == "ConfigMap"
    }
    environment: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["configMapRef"]["name"]
        assert name in configmaps, f"the container reads ConfigMap {name!r}, which is not here"
        environment.update(configmaps[name])
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "fieldRef" in source:
            assert source["fieldRef"]["fieldPath"] == "metadata.name", variable
            environment[variable["name"]] = POD_NAME
        elif "secretKeyRef" in source:
            environment[variable["name"]] = "a-secret-token"
        else:
            environment[variable["name"]] = variable["value"]
    return environment


def _worker_config() -> config.WorkerConfig:
    arguments = _parser().parse_args(_container()["args"])
    return config.load(
        flags={name: getattr(arguments, name) for name in config.SETTINGS},
        kafka_pairs=arguments.kafka,
        environ=_pod_environment(),
        default_application_id=load_topology(arguments.topology).name,
    )


def _validate(document: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(document, version, strict=True)


# --------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_manifest_is_valid_against_the_kubernetes_schemas(version: str) -> None:
    kinds = set()
    for document in _documents():
        _validate(document, version)
        kinds.add(document["kind"])
    assert {"StatefulSet", "Service", "ConfigMap"} <= kinds


def _unknown_container_field(statefulset: dict[str, Any]) -> None:
    statefulset["spec"]["template"]["spec"]["containers"][0]["argz"] = ["run"]


def _port_as_text(statefulset: dict[str, Any]) -> None:
    statefulset["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "x"


def _no_selector(statefulset: dict[str, Any]) -> None:
    del statefulset["spec"]["selector"]


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [(_unknown_container_field, "argz"), (_port_as_text, "'x'"), (_no_selector, "selector")],
    ids=["unknown-field", "port-type", "missing-selector"],
)
def test_the_schema_validation_rejects_a_broken_statefulset(
    breakage: Callable[[dict[str, Any]], None], needle: str
) -> None:
    broken = copy.deepcopy(_one("StatefulSet"))
    breakage(broken)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        _validate(broken, KUBERNETES_VERSIONS[-1])
    assert needle in str(caught.value.message)


# --------------------------------------------------------------------------- what users rely on


def test_every_processor_variable_is_a_real_setting_with_a_valid_value() -> None:
    environment = _pod_environment()
    names = [name for name in environment if name.startswith(config.ENV_PREFIX)]
    assert names, "the pod sets no PROCESSOR_* variable"
    assert config.unknown_environment_settings(environment) == []
    assert not set(names) & config.OTHER_ENVIRONMENT, "a test-only variable in the manifests"
    worker = _worker_config()  # raises ConfigError naming a bad value
    assert worker.application_id == "wordcount"


def test_the_container_runs_a_processor_worker_of_a_real_topology() -> None:
    container = _container()
    # The image's ENTRYPOINT is `processor` (tests/unit/test_compose.py checks the Dockerfile);
    # a `command` would replace it.
    assert "command" not in container, "command replaces the image's `processor` entrypoint"
    arguments = _parser().parse_args(container["args"])
    assert arguments.command == "run"
    assert load_topology(arguments.topology).name == "wordcount"
    assert arguments.workers == 1, "one worker per pod: the pod name is one instance id"


def test_each_pod_is_an_instance_named_after_it_with_its_own_state_volume() -> None:
    statefulset = _one("StatefulSet")
    worker = _worker_config()
    assert worker.instance_id == POD_NAME
    assert "PROCESSOR_INSTANCE_ID" not in _one("ConfigMap")["data"]
    claims = {t["metadata"]["name"] for t in statefulset["spec"]["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in _container()["volumeMounts"]}
    assert mounts.get(str(worker.state_dir)) in claims, (
        f"the state dir {worker.state_dir} is not on a volume claimed per pod ({claims})"
    )


def test_probes_service_and_scrape_reach_the_port_the_worker_serves() -> None:
    worker = _worker_config()
    container = _container()
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert worker.http_port is not None and worker.http_port in ports.values()
    assert worker.http_host == "0.0.0.0", "probes and other pods connect to the pod's address"

    def probe(kind: str) -> tuple[str, int]:
        action = container[kind]["httpGet"]
        port = action["port"]
        return action["path"], ports[port] if isinstance(port, str) else port

    assert probe("livenessProbe") == (LIVENESS_PATH, worker.http_port)
    assert probe("startupProbe") == (LIVENESS_PATH, worker.http_port)
    assert probe("readinessProbe") == (READINESS_PATH, worker.http_port)

    service = _one("Service")
    (service_port,) = service["spec"]["ports"]
    assert ports[service_port["targetPort"]] == worker.http_port
    annotations = _one("StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(worker.http_port)


def test_the_token_comes_from_a_secret_and_never_from_the_configmap() -> None:
    (token,) = [v for v in _container()["env"] if v["name"] == "PROCESSOR_HTTP_TOKEN"]
    assert "secretKeyRef" in token["valueFrom"]
    assert "PROCESSOR_HTTP_TOKEN" not in _one("ConfigMap")["data"]
    assert _worker_config().http_token == "a-secret-token"


def test_pods_have_stable_dns_names_standbys_and_spread_over_nodes() -> None:
    statefulset = _one("StatefulSet")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert service["spec"]["clusterIP"] == "None", "the Service must be headless"

    def selects_the_pods(selector: dict[str, str]) -> bool:
        return bool(selector) and selector.items() <= labels.items()

    assert selects_the_pods(statefulset["spec"]["selector"]["matchLabels"])
    assert selects_the_pods(service["spec"]["selector"])
    budget = _one("PodDisruptionBudget")
    assert selects_the_pods(budget["spec"]["selector"]["matchLabels"])
    affinity = statefulset["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"]
    (term,) = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert selects_the_pods(term["podAffinityTerm"]["labelSelector"]["matchLabels"])

    standbys = _worker_config().num_standby_replicas
    assert standbys >= 1
    assert statefulset["spec"]["replicas"] > standbys, "standbys need other pods to live on"
    assert budget["spec"]["maxUnavailable"] <= standbys, "a drain could take every copy"
