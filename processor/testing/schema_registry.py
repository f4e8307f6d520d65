"""Schema registries for tests: a real one (Apicurio Registry) and an in-memory double.

    with LocalSchemaRegistry() as registry:
        serde = ConfluentAvroSerde(SchemaRegistry(registry.url), "orders-value", schema=...)

    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "orders-value", schema=...)

From a shell: `python -m processor.testing.schema_registry run [--port N]` prints
`url: http://127.0.0.1:PORT/apis/ccompat/v7` and runs until SIGINT or SIGTERM; `... fetch`
only downloads it.

Apicurio Registry 2.6 is a Quarkus application; Maven Central serves its built distribution
(`io.apicurio:apicurio-registry-app:VERSION:tar.gz:all`: a runner jar and its `lib/`), which
`fetch_registry()` copies with `mvn` and unpacks into a cache directory, once. It runs with the
`java` on PATH (17 or newer; Apicurio 3 would need 21), keeps its schemas in an in-memory H2
database (gone when it stops), and answers Confluent's REST API under `/apis/ccompat/v7`.

A registry's lifecycle (anything else raises `SchemaRegistryError`; the process handling is
`processor.testing.java_service`'s, shared with the Kafka broker). Its schemas live in memory, so
it does not start again; stop() removes its directory (where its log is):

```
CREATED --start()--> RUNNING --stop() / kill()--> STOPPED
CREATED, STOPPED --close()--> CLOSED            (close() on RUNNING stops first)
```
"""

from __future__ import annotations

import json
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from processor.kafka.schema_registry import SchemaNotFoundError, SchemaRegistryError
from processor.testing.java_service import CommandLine, JavaService, ServiceState, Transitions
from processor.testing.maven import Maven, default_cache, fetch_once

__all__ = [
    "APICURIO_VERSION",
    "LocalSchemaRegistry",
    "MemorySchemaRegistry",
    "RegistryState",
    "default_registry_dir",
    "fetch_registry",
]

APICURIO_VERSION = "2.6.13.Final"
"""The Apicurio Registry release fetched from Maven Central."""

CACHE_ENV = "PROCESSOR_SCHEMA_REGISTRY_CACHE"
"""Environment variable naming the unpacked distribution's directory, overriding the default."""

CCOMPAT_PATH = "/apis/ccompat/v7"
"""Where Apicurio serves the Confluent-compatible API."""

RegistryState = ServiceState
"""A registry's lifecycle states, drawn in the module docstring."""

_ARTIFACT = f"io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:tar.gz:all"
_DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1"
_RUNNER = f"apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
_JVM = ("-Xmx384m", "-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true")
_TRANSITIONS: Transitions = {
    ServiceState.CREATED: frozenset({ServiceState.RUNNING, ServiceState.CLOSED}),
    ServiceState.RUNNING: frozenset({ServiceState.STOPPED}),
    ServiceState.STOPPED: frozenset({ServiceState.CLOSED}),
    ServiceState.CLOSED: frozenset(),
}


# --- fetching the distribution ------------------------------------------------------------------


def default_registry_dir() -> Path:
    """`$PROCESSOR_SCHEMA_REGISTRY_CACHE` if set, else `<root>/.cache/apicurio-registry-VERSION`.

    `<root>` is this repository when running from a checkout, else the working directory.
    """
    return default_cache(CACHE_ENV, f"apicurio-registry-{APICURIO_VERSION}")


def fetch_registry(directory: Path | None = None) -> Path:
    """Download and unpack Apicurio Registry into `directory` (default `default_registry_dir()`);
    return it.

    Does nothing when an earlier fetch of the same version completed there; concurrent callers
    wait for one another. Raises `SchemaRegistryError` when `mvn` or `java` is missing or Maven
    fails.
    """
    return fetch_once(
        directory if directory is not None else default_registry_dir(),
        what=f"Apicurio Registry {APICURIO_VERSION}",
        marker=_ARTIFACT,
        error=SchemaRegistryError,
        populate=_unpack_distribution,
    )


def _unpack_distribution(maven: Maven, target: Path) -> str:
    maven.run(
        f"{_DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={_ARTIFACT}",
        f"-DoutputDirectory={maven.scratch}",
    )
    archives = list(maven.scratch.glob("*.tar.gz"))
    if len(archives) != 1:
        raise SchemaRegistryError(
            f"fetching Apicurio Registry with Maven left {len(archives)} archives, not one, "
            f"in {maven.scratch}"
        )
    for stale in (target / "lib", target / "meta"):
        shutil.rmtree(stale, ignore_errors=True)
    with tarfile.open(archives[0]) as archive:
        archive.extractall(target, filter="data")
    if not (target / _RUNNER).is_file():
        raise SchemaRegistryError(
            f"the Apicurio Registry distribution unpacked into {target} has no {_RUNNER}"
        )
    return f"Apicurio Registry {APICURIO_VERSION}"


# --- the registry -------------------------------------------------------------------------------


class LocalSchemaRegistry(JavaService):
    """One Apicurio Registry process on 127.0.0.1 with in-memory storage.

    Keyword arguments:
        port: the HTTP port. Default: a free port.
        registry_dir: the unpacked distribution. Default: `fetch_registry()`'s, fetched on
            first start.
        startup_timeout: seconds start() waits for the Confluent-compatible API to answer.
        stop_timeout: seconds stop() waits after SIGTERM before SIGKILL.
    """

    name = "schema registry"
    log_name = "registry.log"
    address_label = "url"
    error = SchemaRegistryError
    transitions = _TRANSITIONS
    port_taken_signs = ("already in use", "Port already bound")
    poll_interval = 0.2

    def __init__(
        self,
        *,
        port: int | None = None,
        registry_dir: Path | None = None,
        startup_timeout: float = 90.0,
        stop_timeout: float = 15.0,
    ) -> None:
        super().__init__(
            directory=None,
            temporary_prefix="processor-apicurio-",
            port=port,
            startup_timeout=startup_timeout,
            stop_timeout=stop_timeout,
        )
        self._registry_dir = registry_dir

    @property
    def url(self) -> str:
        """The base URL of the Confluent-compatible API, for `SchemaRegistry(url)`."""
        return f"http://127.0.0.1:{self._port}{CCOMPAT_PATH}"

    @property
    def address(self) -> str:
        return self.url

    def stop(self) -> None:
        """Stop the registry (SIGTERM, then SIGKILL after `stop_timeout` seconds) and remove its
        directory. Does nothing unless it is running."""
        super().stop()
        if self.state is ServiceState.STOPPED:
            shutil.rmtree(self.directory, ignore_errors=True)

    def _home(self) -> Path:
        return self._registry_dir if self._registry_dir is not None else fetch_registry()

    def _prepare_launch(self, java: str, home: Path) -> list[str]:
        return [
            java,
            *_JVM,
            "-Dquarkus.http.host=127.0.0.1",
            f"-Dquarkus.http.port={self._port}",
            # Match schemas by their canonical form, as Confluent's registry does, so a lookup
            # or registration finds a schema registered with other whitespace or key order.
            "-Dregistry.ccompat.use-canonical-hash=true",
            "-jar",
            str(home / _RUNNER),
        ]

    def _answers(self, timeout: float) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=timeout) as response:
                status: int = response.status
                return status == 200
        except (OSError, urllib.error.URLError):
            return False


# --- the in-memory double -----------------------------------------------------------------------


class MemorySchemaRegistry:
    """A schema registry in this process's memory, with `SchemaRegistry`'s methods and errors:
    for unit tests and the `TopologyTestDriver`, where no registry runs.

    Like a real registry, it gives one id to each distinct schema (compared as parsed JSON) and
    lists under each subject the schemas registered there. It checks no compatibility.
    """

    url = "memory://schema-registry"

    def __init__(self) -> None:
        self._texts: list[str] = []  # id - 1 -> schema text
        self._ids: dict[str, int] = {}  # canonical JSON -> id
        self._subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        key = self._key(schema_str)
        schema_id = self._ids.get(key)
        if schema_id is None:
            self._texts.append(schema_str)
            schema_id = self._ids[key] = len(self._texts)
        versions = self._subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def lookup(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        schema_id = self._ids.get(self._key(schema_str))
        if schema_id is None or schema_id not in self._subjects.get(subject, ()):
            raise SchemaNotFoundError(
                f"schema registry at {self.url}: the schema is not registered under subject "
                f"{subject!r}; register the schema first, or let the serde register it",
                url=self.url,
                status=404,
                error_code=40403,
            )
        return schema_id

    def schema_by_id(self, schema_id: int) -> str:
        if not 1 <= schema_id <= len(self._texts):
            raise SchemaNotFoundError(
                f"schema id {schema_id} unknown to the registry at {self.url}",
                url=self.url,
                status=404,
                error_code=40403,
            )
        return self._texts[schema_id - 1]

    def subjects(self) -> dict[str, list[int]]:
        """The schema ids registered under each subject, oldest first."""
        return {subject: list(ids) for subject, ids in self._subjects.items()}

    @staticmethod
    def _key(schema_str: str) -> str:
        try:
            return json.dumps(json.loads(schema_str), sort_keys=True, separators=(",", ":"))
        except json.JSONDecodeError:
            return schema_str.strip()

    def __repr__(self) -> str:
        return f"MemorySchemaRegistry({len(self._texts)} schemas)"


# --- command line -------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    cli = CommandLine(
        module="processor.testing.schema_registry",
        description=(
            f"Run a local Apicurio Registry {APICURIO_VERSION} (in-memory storage) with its "
            "Confluent-compatible API."
        ),
        noun="registry",
        prints="its URL",
        fetches="and unpack the registry",
        fetch_flag="--dir",
        fetch_default=f"${CACHE_ENV} or {default_registry_dir()}",
        default_timeout=90.0,
        error=SchemaRegistryError,
    )
    return cli.main(
        argv,
        service=lambda args: LocalSchemaRegistry(port=args.port, startup_timeout=args.timeout),
        fetch=fetch_registry,
    )


if __name__ == "__main__":
    sys.exit(main())
