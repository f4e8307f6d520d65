"""Static checks of the container setup: docker-compose.yml and the Dockerfile.

None of this needs a Docker engine. docker-compose.yml is validated against the
Compose specification by the Compose CLI's own `config -q` (Debian's
`docker-compose` package, v1.29, which checks the file against the
compose-spec JSON schema it ships and resolves references between services
without contacting an engine). A missing CLI is a failure, not a skip, so that
CI cannot go green without having validated the file.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

try:
    import yaml
except ImportError:  # pragma: no cover - depends on the environment
    yaml = None

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKERFILE = REPO / "Dockerfile"
PYPROJECT = REPO / "pyproject.toml"

STATE_DIR = "/var/lib/processor"
KAFKA_IMAGE = "apache/kafka:4.1.1"
EXPECTED_TOPICS = {"sentences": 6, "words": 6, "currency-rates": 1}

COMPOSE_INSTALL = "apt-get update && apt-get install -y --no-install-recommends docker-compose"


# --------------------------------------------------------------------------- helpers


def _yaml() -> Any:
    if yaml is None:
        pytest.fail(
            "PyYAML is needed to read docker-compose.yml; install the dev extra "
            "(pip install -e '.[dev]') or just PyYAML (pip install 'PyYAML>=6')",
            pytrace=False,
        )
    return yaml


def _load_compose() -> dict[str, Any]:
    data = _yaml().safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    service = services[name]
    assert isinstance(service, dict), f"service {name!r} is not a mapping"
    return service


def _compose_config(compose_file: Path) -> subprocess.CompletedProcess[str]:
    """Run `docker-compose config -q` on *compose_file*, paths resolved against the repo."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail(
            "`docker-compose` is not on PATH. It validates docker-compose.yml against the "
            f"Compose specification without a Docker engine. Install it with: {COMPOSE_INSTALL}",
            pytrace=False,
        )
    # Nothing from the caller's environment may change which file is read or
    # how; an unreachable DOCKER_HOST proves that no engine is consulted.
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    return subprocess.run(
        [exe, "--project-directory", str(REPO), "-f", str(compose_file), "config", "-q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def _args(value: Any) -> list[str]:
    """A Compose `command`/`entrypoint` (string or list) as an argument list."""
    if value is None:
        return []
    if isinstance(value, str):
        return shlex.split(value)
    return [str(item) for item in value]


def _module_after_run(args: list[str], where: str) -> str:
    assert "run" in args, f"{where} does not invoke `run`: {args!r}"
    index = args.index("run")
    assert index + 1 < len(args), f"{where} gives no topology module after `run`: {args!r}"
    return args[index + 1]


def _assert_topology_exists(module: str, where: str) -> None:
    assert re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", module), (
        f"{where}: {module!r} is not a dotted module name"
    )
    relative = Path(*module.split("."))
    candidates = [REPO / relative.with_suffix(".py"), REPO / relative / "__init__.py"]
    assert any(path.is_file() for path in candidates), (
        f"{where} runs topology module {module!r}, but neither "
        f"{candidates[0].relative_to(REPO)} nor {candidates[1].relative_to(REPO)} exists"
    )


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) of the Dockerfile's final stage, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue  # also skipped inside a continued instruction, as Docker does
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "Dockerfile ends inside a continued instruction"
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _exec_form(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    values = [rest for kw, rest in instructions if kw == keyword]
    assert values, f"the Dockerfile's final stage has no {keyword}"
    try:
        parsed = json.loads(values[-1])  # the last one wins
    except json.JSONDecodeError:
        parsed = None
    assert isinstance(parsed, list) and all(isinstance(a, str) for a in parsed), (
        f"Dockerfile {keyword} must use the exec (JSON array) form, got {values[-1]!r}"
    )
    return parsed


# --------------------------------------------------------------------------- validation


def test_compose_file_is_valid_compose_spec() -> None:
    result = _compose_config(COMPOSE_FILE)
    assert result.returncode == 0, (
        f"docker-compose.yml fails Compose validation:\n{result.stderr}{result.stdout}"
    )


def _unknown_top_level_key(data: dict[str, Any]) -> None:
    data["bogus"] = {"a": 1}


def _non_integer_scale(data: dict[str, Any]) -> None:
    data["services"]["worker"]["scale"] = "x"


def _unknown_service_option(data: dict[str, Any]) -> None:
    data["services"]["worker"]["replicas"] = 3


def _bad_depends_on_condition(data: dict[str, Any]) -> None:
    data["services"]["worker"]["depends_on"]["topics"]["condition"] = "service_finished"


def _undefined_dependency(data: dict[str, Any]) -> None:
    data["services"]["worker"]["depends_on"]["nosuch"] = {"condition": "service_started"}


@pytest.mark.parametrize(
    ("breakage", "needle"),
    [
        (None, None),  # control: the same round trip without a change passes
        (_unknown_top_level_key, "bogus"),
        (_non_integer_scale, "scale"),
        (_unknown_service_option, "replicas"),
        (_bad_depends_on_condition, "service_finished"),
        (_undefined_dependency, "nosuch"),
    ],
    ids=["unchanged", "top-level-key", "scale-x", "service-option", "condition", "dependency"],
)
def test_validator_rejects_broken_compose_file(
    tmp_path: Path, breakage: Any, needle: str | None
) -> None:
    """The validation above is real: a deliberately broken copy of the file fails it."""
    data = _load_compose()
    if breakage is not None:
        breakage(data)
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(_yaml().safe_dump(data, sort_keys=False), encoding="utf-8")

    result = _compose_config(copy)
    output = result.stderr + result.stdout
    if needle is None:
        assert result.returncode == 0, f"unchanged copy fails validation:\n{output}"
    else:
        assert result.returncode != 0, f"broken copy ({needle}) passed validation"
        assert needle in output, f"broken copy failed, but not because of {needle!r}:\n{output}"


# --------------------------------------------------------------------------- services


def test_worker_runs_a_topology_module_that_exists() -> None:
    worker = _service(_load_compose(), "worker")
    assert "command" in worker, "worker has no explicit command"
    module = _module_after_run(_args(worker["command"]), "worker command")
    _assert_topology_exists(module, "worker command")


def test_worker_can_be_scaled() -> None:
    """`docker compose up --scale worker=N` needs per-replica names, ports and state."""
    worker = _service(_load_compose(), "worker")

    assert "container_name" not in worker, "worker sets container_name: replicas would clash"

    for port in worker.get("ports") or []:
        published = ":" in str(port) if not isinstance(port, dict) else "published" in port
        assert not published, f"worker publishes a fixed host port ({port!r}): replicas clash"

    # The instance id lives in the state dir, so replicas must neither share
    # the dir through a named volume or bind mount nor get the same id.
    for volume in worker.get("volumes") or []:
        if isinstance(volume, dict):
            shared = bool(volume.get("source")) and volume.get("target") == STATE_DIR
        else:
            parts = str(volume).split(":")
            shared = len(parts) >= 2 and parts[1] == STATE_DIR
        assert not shared, f"worker mounts a shared volume on {STATE_DIR}: {volume!r}"

    environment = worker.get("environment") or {}
    names = (
        set(environment)
        if isinstance(environment, dict)
        else {str(item).split("=", 1)[0] for item in environment}
    )
    assert "PROCESSOR_INSTANCE_ID" not in names, "a fixed instance id would be shared by replicas"


def test_worker_configuration() -> None:
    worker = _service(_load_compose(), "worker")
    assert "build" in worker, "worker is not built from the Dockerfile"
    environment = worker.get("environment")
    assert isinstance(environment, dict), "worker environment should be a mapping"
    assert environment.get("PROCESSOR_BOOTSTRAP_SERVERS") == "kafka:9092"
    assert environment.get("PROCESSOR_APPLICATION_ID") == "words"


def _kafka_topics_calls(topics: dict[str, Any]) -> dict[str, int]:
    """{topic: partitions} for every `kafka-topics.sh --create` in the init service."""
    script = " ".join(_args(topics.get("entrypoint")) + _args(topics.get("command")))
    created: dict[str, int] = {}
    for segment in re.split(r"&&|;|\|\|", script):
        args = shlex.split(segment)
        if not any(arg.endswith("kafka-topics.sh") for arg in args) or "--create" not in args:
            continue
        assert any(arg.startswith("/opt/kafka/bin/") for arg in args), (
            f"use the image's /opt/kafka/bin/kafka-topics.sh: {segment.strip()!r}"
        )
        assert "--topic" in args and "--partitions" in args, segment
        topic = args[args.index("--topic") + 1]
        created[topic] = int(args[args.index("--partitions") + 1])
    return created


def test_topics_are_created_before_workers_start() -> None:
    compose = _load_compose()
    kafka = _service(compose, "kafka")
    topics = _service(compose, "topics")
    worker = _service(compose, "worker")

    assert kafka.get("image") == KAFKA_IMAGE
    assert "healthcheck" in kafka, "kafka needs a healthcheck for service_healthy"
    assert topics.get("image") == KAFKA_IMAGE

    created = _kafka_topics_calls(topics)
    assert created == EXPECTED_TOPICS, (
        f"the topics job creates {created} (topic: partitions), expected {EXPECTED_TOPICS}"
    )

    assert (topics.get("depends_on") or {}).get("kafka", {}).get("condition") == (
        "service_healthy"
    ), "topics must wait for a healthy broker"
    assert (worker.get("depends_on") or {}).get("topics", {}).get("condition") == (
        "service_completed_successfully"
    ), "workers must wait for the topics job to complete successfully"


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_entrypoint_is_the_console_script() -> None:
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    instructions = _dockerfile_instructions()

    entrypoint = _exec_form(instructions, "ENTRYPOINT")
    assert entrypoint == ["processor"], f"ENTRYPOINT is {entrypoint!r}"
    assert entrypoint[0] in scripts, (
        f"ENTRYPOINT {entrypoint[0]!r} is not a console script of pyproject.toml: {sorted(scripts)}"
    )

    # The console script only exists in the image if the package is installed there.
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    assert any(re.search(r"\bpip install (-\S+ )*\.(\s|$)", run) for run in runs), (
        "the Dockerfile never runs `pip install .`"
    )


def test_dockerfile_default_command_runs_an_existing_topology() -> None:
    instructions = _dockerfile_instructions()
    module = _module_after_run(_exec_form(instructions, "CMD"), "Dockerfile CMD")
    _assert_topology_exists(module, "Dockerfile CMD")

    copied = [rest.split() for keyword, rest in instructions if keyword == "COPY"]
    top_package = module.split(".")[0]
    assert any(src.rstrip("/") == top_package for args in copied for src in args[:-1]), (
        f"the Dockerfile does not COPY {top_package}/ into the image"
    )


def test_dockerfile_runs_unprivileged_with_a_state_volume() -> None:
    instructions = _dockerfile_instructions()
    users = [rest for keyword, rest in instructions if keyword == "USER"]
    assert users, "the image runs as root"
    assert users[-1].split(":")[0] not in {"root", "0"}, "the image runs as root"
    assert _exec_form(instructions, "VOLUME") == [STATE_DIR]


def test_prometheus_scrapes_the_port_every_worker_serves_metrics_on() -> None:
    compose = _load_compose()
    environment = _service(compose, "worker")["environment"]
    assert environment.get("PROCESSOR_HTTP_HOST") == "0.0.0.0", "reachable from other containers"
    port = int(environment["PROCESSOR_HTTP_PORT"])
    prometheus = _service(compose, "prometheus")
    mount = next(
        v for v in prometheus["volumes"] if v.endswith(":/etc/prometheus/prometheus.yml:ro")
    )
    config_path = REPO / mount.split(":")[0]
    assert yaml is not None
    config = yaml.safe_load(config_path.read_text())
    (job,) = config["scrape_configs"]
    (discovery,) = job["dns_sd_configs"]
    assert discovery["names"] == ["worker"] and discovery["port"] == port


def test_the_etl_example_runs_against_postgres_with_a_shared_data_volume() -> None:
    compose = _load_compose()
    etl, postgres = _service(compose, "etl"), _service(compose, "postgres")
    assert etl["command"][:2] == ["run", "topologies.etl_orders"]
    assert (REPO / "topologies" / "etl_orders.py").is_file()
    database = etl["environment"]["ETL_DATABASE"]
    env = postgres["environment"]
    assert database == (
        f"postgresql://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}@postgres:5432/"
        f"{env['POSTGRES_DB']}"
    )
    assert (etl.get("depends_on") or {}).get("postgres", {}).get("condition") == "service_healthy"
    assert "etl-data:/data" in etl["volumes"], (
        "the source's input and the Parquet output are shared"
    )
    schema = [v for v in postgres["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert schema and (REPO / schema[0].split(":")[0]).is_file()


def test_grafana_is_provisioned_with_prometheus_and_the_dashboard() -> None:
    """`docker compose up` opens Grafana with the repo's dashboard over the compose Prometheus:
    the data source points at the prometheus service, the provider reads the directory the
    dashboard JSON is mounted at, and the dashboard's default data source is that one."""
    compose = _load_compose()
    grafana = _service(compose, "grafana")
    mounts = {v.split(":")[1]: REPO / v.split(":")[0] for v in grafana["volumes"]}
    provisioning = mounts["/etc/grafana/provisioning"]
    assert yaml is not None
    (source,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    prometheus_port = _service(compose, "prometheus")["ports"][0].split(":")[-1]
    assert source["type"] == "prometheus"
    assert source["url"] == f"http://prometheus:{prometheus_port}"
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "processor.yml").read_text())[
        "providers"
    ]
    dashboards = mounts[provider["options"]["path"]]
    dashboard = json.loads((dashboards / "processor.json").read_text())
    (variable,) = dashboard["templating"]["list"]
    assert variable["current"]["value"] == source["uid"]
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert targets and all(t["datasource"]["uid"] == "${datasource}" for t in targets)
