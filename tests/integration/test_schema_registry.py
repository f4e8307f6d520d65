"""The Confluent Avro serde against a real schema registry: Apicurio Registry's Confluent-compatible
API, started on 127.0.0.1 by `LocalSchemaRegistry` (fetched by scripts/setup). Set
`PROCESSOR_TEST_SCHEMA_REGISTRY_URL` to run them against a registry you started yourself, e.g.
with `python -m processor.testing.schema_registry run`."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from processor.kafka.schema_registry import (
    SchemaNotFoundError,
    SchemaRegistry,
    SchemaRegistryUnavailableError,
    SchemaRejectedError,
)
from processor.serdes import ConfluentAvroSerde, topic_subject
from processor.testing.schema_registry import LocalSchemaRegistry

pytestmark = pytest.mark.integration

REGISTRY_ENV = "PROCESSOR_TEST_SCHEMA_REGISTRY_URL"

USER_V1: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "app",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "comment", "type": "string", "default": ""},
    ],
}
# Backward compatible with V1: adds a defaulted field, drops one, promotes int to long.
USER_V2: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "app",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "long"},
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
}
# Not backward compatible with V1: a new field without a default.
USER_V3: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "app",
    "fields": [{"name": "name", "type": "string"}, {"name": "email", "type": "string"}],
}


@pytest.fixture(scope="module")
def registry_url() -> Iterator[str]:
    """`$PROCESSOR_TEST_SCHEMA_REGISTRY_URL`, or a local Apicurio Registry for this module."""
    external = os.environ.get(REGISTRY_ENV)
    if external:
        yield external
        return
    with LocalSchemaRegistry() as registry:
        yield registry.url


@pytest.fixture
def registry(registry_url: str) -> Iterator[SchemaRegistry]:
    with SchemaRegistry(registry_url) as client:
        yield client


@pytest.fixture
def subject(unique_name: str) -> str:
    return topic_subject(unique_name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_serializing_registers_the_schema_and_writes_its_id(
    registry: SchemaRegistry, subject: str
) -> None:
    serde = ConfluentAvroSerde(registry, subject, schema=USER_V1)
    data = serde.serialize({"name": "ada", "age": 36, "comment": "hi"})
    assert data is not None
    assert data[0] == 0
    schema_id = int.from_bytes(data[1:5], "big")
    assert schema_id == serde.schema_id
    assert registry.lookup(subject, json.dumps(USER_V1)) == schema_id
    assert json.loads(registry.schema_by_id(schema_id)) == USER_V1
    # Registering the same schema again, from another serde, finds the same id.
    again = ConfluentAvroSerde(registry, subject, schema=json.dumps(USER_V1, indent=2))
    again_data = again.serialize({"name": "bob", "age": 1, "comment": ""})
    assert again_data is not None and again_data[1:5] == data[1:5]
    # Any serde can read it: the writer schema comes from the registry.
    with SchemaRegistry(registry.url) as fresh:
        reader = ConfluentAvroSerde(fresh, subject)
        assert reader.deserialize(data) == {"name": "ada", "age": 36, "comment": "hi"}


def test_a_reader_schema_reads_records_written_with_the_old_schema(
    registry: SchemaRegistry, subject: str
) -> None:
    registry.set_compatibility(subject, "BACKWARD")
    v1 = ConfluentAvroSerde(registry, subject, schema=USER_V1)
    old = v1.serialize({"name": "ada", "age": 36, "comment": "dropped in v2"})
    v2 = ConfluentAvroSerde(registry, subject, schema=USER_V2)
    new = v2.serialize({"name": "bob", "age": 2**40, "currency": "USD"})
    assert v2.schema_id != v1.schema_id
    with SchemaRegistry(registry.url) as fresh:
        reader = ConfluentAvroSerde(fresh, subject, reader_schema=USER_V2)
        assert reader.deserialize(old) == {"name": "ada", "age": 36, "currency": "EUR"}
        assert reader.deserialize(new) == {"name": "bob", "age": 2**40, "currency": "USD"}


def test_an_incompatible_schema_is_rejected(registry: SchemaRegistry, subject: str) -> None:
    registry.set_compatibility(subject, "BACKWARD")
    ConfluentAvroSerde(registry, subject, schema=USER_V1).serialize(
        {"name": "ada", "age": 36, "comment": ""}
    )
    serde = ConfluentAvroSerde(registry, subject, schema=USER_V3)
    with pytest.raises(
        SchemaRejectedError, match=f"schema registry at {registry.url} refused"
    ) as e:
        serde.serialize({"name": "ada", "email": "ada@example.org"})
    assert subject in str(e.value)
    assert e.value.status == 409


def test_auto_register_off_uses_a_registered_schema_and_refuses_an_unknown_one(
    registry: SchemaRegistry, subject: str
) -> None:
    serde = ConfluentAvroSerde(registry, subject, schema=USER_V1, auto_register=False)
    with pytest.raises(SchemaNotFoundError, match=f"registry at {registry.url}.*{subject}"):
        serde.serialize({"name": "ada", "age": 36, "comment": ""})
    schema_id = registry.register(subject, json.dumps(USER_V1))
    data = serde.serialize({"name": "ada", "age": 36, "comment": ""})
    assert data is not None and int.from_bytes(data[1:5], "big") == schema_id


def test_an_unknown_schema_id_names_the_id_and_the_registry(registry: SchemaRegistry) -> None:
    serde = ConfluentAvroSerde(registry, "nobody-value")
    unknown = 2**31 - 7
    with pytest.raises(
        SchemaNotFoundError, match=f"schema id {unknown} unknown to the registry at {registry.url}"
    ):
        serde.deserialize(b"\x00" + unknown.to_bytes(4, "big") + b"\x02a")


def test_an_unreachable_registry_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with SchemaRegistry(url, timeout=2.0, max_retries=0) as registry:
        serde = ConfluentAvroSerde(registry, "users-value", schema=USER_V1)
        with pytest.raises(
            SchemaRegistryUnavailableError,
            match=f"schema registry at {url} cannot be reached while registering a schema "
            "under subject 'users-value'",
        ):
            serde.serialize({"name": "ada", "age": 36, "comment": ""})
        with pytest.raises(
            SchemaRegistryUnavailableError,
            match=f"schema registry at {url} cannot be reached while fetching schema id 3",
        ):
            serde.deserialize(b"\x00\x00\x00\x00\x03\x02a")


def test_bytes_interoperate_with_confluents_own_avro_serde(
    registry: SchemaRegistry, unique_name: str
) -> None:
    """Confluent's AvroSerializer and AvroDeserializer (what Java's KafkaAvroSerializer
    writes, too) and ours read each other's records."""
    context = SerializationContext(unique_name, MessageField.VALUE)
    client = SchemaRegistryClient({"url": registry.url})
    try:
        theirs = AvroSerializer(client, json.dumps(USER_V1))
        their_reader = AvroDeserializer(client)
        ours = ConfluentAvroSerde(registry, topic_subject(unique_name), schema=USER_V1)
        record = {"name": "ada", "age": 36, "comment": "hi"}
        written_by_them = theirs(record, context)
        assert ours.deserialize(written_by_them) == record
        written_by_us = ours.serialize(record)
        assert their_reader(written_by_us, context) == record
        assert written_by_us == written_by_them
    finally:
        client.close()
