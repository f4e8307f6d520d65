"""Avro serdes: round trips over generated records, schema evolution, the Confluent wire format,
and the errors that bad schemas, bad values and bad bytes raise (against the in-memory registry;
tests/integration/test_schema_registry.py runs the same serde against a real one)."""

from __future__ import annotations

import contextlib
import io
import json
import struct
from pathlib import Path
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from processor import Topology
from processor.kafka.schema_registry import SchemaNotFoundError
from processor.serdes import (
    AvroDecodeError,
    AvroEncodeError,
    AvroError,
    AvroSchemaError,
    AvroSerde,
    ConfluentAvroSerde,
    StringSerde,
    topic_subject,
)
from processor.testing import TopologyTestDriver
from processor.testing.schema_registry import MemorySchemaRegistry

ORDER: dict[str, Any] = {
    "type": "record",
    "name": "Order",
    "namespace": "shop",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "quantity", "type": "int"},
        {"name": "price", "type": "double"},
        {"name": "weight", "type": "float"},
        {"name": "paid", "type": "boolean"},
        {"name": "customer", "type": "string"},
        {"name": "payload", "type": "bytes"},
        {"name": "note", "type": ["null", "string"], "default": None},
        {
            "name": "status",
            "type": {"type": "enum", "name": "Status", "symbols": ["NEW", "PAID", "SHIPPED"]},
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
        {"name": "attributes", "type": {"type": "map", "values": "long"}},
        {"name": "checksum", "type": {"type": "fixed", "name": "Checksum", "size": 4}},
        {
            "name": "address",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Address",
                    "fields": [
                        {"name": "street", "type": "string"},
                        {"name": "zip", "type": "int"},
                    ],
                },
            ],
        },
        {
            "name": "lines",
            "type": {
                "type": "array",
                "items": {
                    "type": "record",
                    "name": "Line",
                    "fields": [{"name": "sku", "type": "string"}, {"name": "count", "type": "int"}],
                },
            },
        },
    ],
}

# Version 1 of a schema, and version 2: adds `currency` with a default, drops `comment`.
USER_V1: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "app",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "int"},
        {"name": "comment", "type": "string"},
    ],
}
USER_V2: dict[str, Any] = {
    "type": "record",
    "name": "User",
    "namespace": "app",
    "fields": [
        {"name": "name", "type": "string"},
        {"name": "age", "type": "long"},  # int -> long is a legal promotion
        {"name": "currency", "type": "string", "default": "EUR"},
    ],
}

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
_PRIMITIVE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "int": INT32,
    "long": INT64,
    "float": st.floats(width=32, allow_nan=False),
    "double": st.floats(allow_nan=False),
    "string": st.text(max_size=20),
    "bytes": st.binary(max_size=20),
}


def values_of(schema: Any, named: dict[str, Any] | None = None, namespace: str = "") -> Any:
    """A hypothesis strategy for values of an Avro schema (the types ORDER uses)."""
    named = {} if named is None else named
    if isinstance(schema, str):
        if schema in _PRIMITIVE_VALUES:
            return _PRIMITIVE_VALUES[schema]
        full = schema if "." in schema else f"{namespace}.{schema}".lstrip(".")
        return values_of(named[full], named, namespace)
    if isinstance(schema, list):
        return st.one_of([values_of(branch, named, namespace) for branch in schema])
    kind = schema["type"]
    if kind in ("record", "enum", "fixed"):
        name = schema["name"]
        namespace = schema.get("namespace", namespace)
        named[f"{namespace}.{name}".lstrip(".")] = schema
    if kind == "record":
        return st.fixed_dictionaries(
            {f["name"]: values_of(f["type"], named, namespace) for f in schema["fields"]}
        )
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "fixed":
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    if kind == "array":
        return st.lists(values_of(schema["items"], named, namespace), max_size=4)
    if kind == "map":
        return st.dictionaries(
            st.text(max_size=8), values_of(schema["values"], named, namespace), max_size=4
        )
    return values_of(kind, named, namespace)


def avro_body(schema: Any, value: Any) -> bytes:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(schema), value)
    return out.getvalue()


class CountingRegistry(MemorySchemaRegistry):
    """The in-memory registry, counting the calls a serde makes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    def register(self, subject: str, schema_str: str, *, schema_type: str = "AVRO") -> int:
        self.calls.append(("register", subject))
        return super().register(subject, schema_str, schema_type=schema_type)

    def schema_by_id(self, schema_id: int) -> str:
        self.calls.append(("schema_by_id", schema_id))
        return super().schema_by_id(schema_id)


def sample_order(**changes: Any) -> dict[str, Any]:
    order = {
        "id": 7,
        "quantity": 2,
        "price": 9.5,
        "weight": 1.25,
        "paid": True,
        "customer": "ada",
        "payload": b"\x00\x01",
        "note": None,
        "status": "PAID",
        "tags": ["gift"],
        "attributes": {"priority": 1},
        "checksum": b"abcd",
        "address": {"street": "Main St", "zip": 12345},
        "lines": [{"sku": "A-1", "count": 2}],
    }
    order.update(changes)
    return order


# --- round trips ----------------------------------------------------------------------------


@settings(max_examples=200)
@given(values_of(ORDER))
def test_plain_avro_round_trips_every_record_of_the_schema(order: dict[str, Any]) -> None:
    serde = AvroSerde(ORDER)
    data = serde.serialize(order)
    assert data == avro_body(ORDER, order)  # the bare Avro encoding, nothing around it
    assert serde.deserialize(data) == order


@settings(max_examples=100)
@given(values_of(ORDER))
def test_confluent_avro_round_trips_every_record_of_the_schema(order: dict[str, Any]) -> None:
    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "orders-value", schema=ORDER)
    data = serde.serialize(order)
    assert data is not None
    assert data[:5] == b"\x00" + struct.pack(">I", serde.schema_id)
    assert data[5:] == avro_body(ORDER, order)
    assert serde.deserialize(data) == order


@pytest.mark.parametrize(
    ("schema", "value"),
    [
        ("string", "text"),
        ('"long"', 2**40),
        (["null", "int"], 5),
        ({"type": "array", "items": "int"}, [1, 2]),
    ],
)
def test_schemas_that_are_not_records(schema: Any, value: Any) -> None:
    serde = AvroSerde(schema)
    assert serde.deserialize(serde.serialize(value)) == value


def test_none_passes_through_both_ways() -> None:
    registry = CountingRegistry()
    for serde in (AvroSerde(ORDER), ConfluentAvroSerde(registry, "o-value", schema=ORDER)):
        assert serde.serialize(None) is None
        assert serde.deserialize(None) is None
    assert registry.calls == []  # a tombstone needs no schema


def test_schema_from_json_text_and_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "order.avsc"
    path.write_text(json.dumps(ORDER, indent=2))
    order = sample_order()
    expected = AvroSerde(ORDER).serialize(order)
    assert AvroSerde(json.dumps(ORDER)).serialize(order) == expected
    from_file = AvroSerde(path)
    assert from_file.serialize(order) == expected
    assert from_file.deserialize(expected) == order
    assert json.loads(from_file.schema) == ORDER


# --- schema evolution -----------------------------------------------------------------------


def test_old_writer_new_reader_fills_defaults_and_drops_removed_fields() -> None:
    old = AvroSerde(USER_V1)
    new_reader = AvroSerde(USER_V1, reader_schema=USER_V2)
    data = old.serialize({"name": "ada", "age": 36, "comment": "first"})
    assert new_reader.deserialize(data) == {"name": "ada", "age": 36, "currency": "EUR"}


def test_new_writer_old_reader_fails_clearly_when_a_field_has_no_default() -> None:
    # USER_V1 needs `comment`, which V2 records lack and V1 gives no default for.
    serde = AvroSerde(USER_V2, reader_schema=USER_V1)
    data = AvroSerde(USER_V2).serialize({"name": "ada", "age": 36, "currency": "USD"})
    with pytest.raises(AvroDecodeError, match=r"record app\.User.*cannot be read with reader"):
        serde.deserialize(data)


def test_confluent_reader_schema_reads_records_of_every_writer_version() -> None:
    registry = CountingRegistry()
    v1 = ConfluentAvroSerde(registry, "users-value", schema=USER_V1)
    v2 = ConfluentAvroSerde(registry, "users-value", schema=USER_V2)
    reader = ConfluentAvroSerde(registry, "users-value", reader_schema=USER_V2)
    old = v1.serialize({"name": "ada", "age": 36, "comment": "x"})
    new = v2.serialize({"name": "bob", "age": 2**40, "currency": "USD"})
    assert v1.schema_id != v2.schema_id
    assert registry.subjects() == {"users-value": [v1.schema_id, v2.schema_id]}
    assert reader.deserialize(old) == {"name": "ada", "age": 36, "currency": "EUR"}
    assert reader.deserialize(new) == {"name": "bob", "age": 2**40, "currency": "USD"}
    # Without a reader schema, records come back as they were written.
    as_written = ConfluentAvroSerde(registry, "users-value")
    assert as_written.deserialize(old) == {"name": "ada", "age": 36, "comment": "x"}


# --- the Confluent wire format --------------------------------------------------------------


def test_wire_format_is_magic_byte_schema_id_then_avro_body() -> None:
    registry = MemorySchemaRegistry()
    registry.register("other-value", json.dumps(USER_V2))  # so the order's id is 2, not 1
    serde = ConfluentAvroSerde(registry, "users-value", schema=USER_V1)
    data = serde.serialize({"name": "a", "age": 1, "comment": ""})
    # 0x00, id 2 as 4 big-endian bytes, then "a" (length 1 zigzag = 0x02), 1 (0x02), "" (0x00)
    assert data == b"\x00\x00\x00\x00\x02" + b"\x02a" + b"\x02" + b"\x00"


def test_reads_wire_format_written_by_another_producer() -> None:
    registry = MemorySchemaRegistry()
    schema_id = registry.register("users-value", json.dumps(USER_V1))
    value = {"name": "ada", "age": 36, "comment": "hi"}
    data = b"\x00" + schema_id.to_bytes(4, "big") + avro_body(USER_V1, value)
    assert ConfluentAvroSerde(registry, "users-value").deserialize(data) == value


def test_registers_once_and_fetches_each_writer_schema_once() -> None:
    registry = CountingRegistry()
    writer = ConfluentAvroSerde(registry, "orders-value", schema=ORDER)
    records = [writer.serialize(sample_order(id=i)) for i in range(20)]
    assert registry.calls == [("register", "orders-value")]
    reader = ConfluentAvroSerde(registry, "orders-value")
    assert [reader.deserialize(r)["id"] for r in records] == list(range(20))  # type: ignore[index]
    assert registry.calls == [("register", "orders-value"), ("schema_by_id", writer.schema_id)]


def test_auto_register_off_finds_a_registered_schema_and_refuses_an_unknown_one() -> None:
    registry = MemorySchemaRegistry()
    serde = ConfluentAvroSerde(registry, "users-value", schema=USER_V1, auto_register=False)
    with pytest.raises(SchemaNotFoundError, match="not registered under subject 'users-value'"):
        serde.serialize({"name": "a", "age": 1, "comment": ""})
    schema_id = registry.register("users-value", json.dumps(USER_V1, indent=4))
    data = serde.serialize({"name": "a", "age": 1, "comment": ""})
    assert data is not None and data[1:5] == schema_id.to_bytes(4, "big")
    assert registry.subjects() == {"users-value": [schema_id]}


def test_serializing_without_a_schema_says_so() -> None:
    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "users-value")
    with pytest.raises(AvroEncodeError, match=r"no schema to write with; give it schema="):
        serde.serialize({"name": "a"})


@pytest.mark.parametrize(
    ("data", "first"),
    [(b'{"name": "ada"}', "0x7b"), (b"\x01\x00\x00\x00\x01\x02", "0x01"), (b"\xff", "0xff")],
)
def test_wrong_magic_byte_is_not_wire_format(data: bytes, first: str) -> None:
    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "users-value")
    with pytest.raises(
        AvroDecodeError,
        match=f"not Confluent wire format: first byte {first}, expected magic byte 0x00",
    ):
        serde.deserialize(data)


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_shorter_than_the_header_is_not_wire_format(data: bytes) -> None:
    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "users-value")
    with pytest.raises(AvroDecodeError, match=f"{len(data)} bytes, fewer than the 5-byte header"):
        serde.deserialize(data)


def test_unknown_schema_id_names_the_id_and_the_registry() -> None:
    registry = MemorySchemaRegistry()
    serde = ConfluentAvroSerde(registry, "users-value")
    with pytest.raises(
        SchemaNotFoundError, match=f"schema id 42 unknown to the registry at {registry.url}"
    ):
        serde.deserialize(b"\x00\x00\x00\x00\x2a\x02")


def test_a_registry_schema_that_is_not_avro_names_the_id() -> None:
    registry = MemorySchemaRegistry()
    schema_id = registry.register("x-value", 'syntax = "proto3"; message M {}')
    serde = ConfluentAvroSerde(registry, "x-value")
    with pytest.raises(
        AvroSchemaError, match=f"schema id {schema_id} from the registry at memory://"
    ):
        serde.deserialize(b"\x00" + schema_id.to_bytes(4, "big") + b"\x00")


def test_topic_subject_follows_the_topic_name_strategy() -> None:
    assert topic_subject("orders") == "orders-value"
    assert topic_subject("orders", key=True) == "orders-key"


# --- bad bytes ------------------------------------------------------------------------------


def test_truncated_record_raises_naming_the_schema() -> None:
    serde = AvroSerde(ORDER)
    data = serde.serialize(sample_order())
    assert data is not None
    for cut in range(len(data)):
        with pytest.raises(AvroDecodeError, match=r"Order"):
            serde.deserialize(data[:cut])
    with pytest.raises(AvroDecodeError, match=r"truncated Avro record for record shop\.Order"):
        serde.deserialize(data[:-3])


def test_truncated_wire_format_record_names_the_schema_id() -> None:
    serde = ConfluentAvroSerde(MemorySchemaRegistry(), "orders-value", schema=ORDER)
    data = serde.serialize(sample_order())
    assert data is not None
    with pytest.raises(
        AvroDecodeError, match=r"truncated Avro record for record shop\.Order \(schema id 1\)"
    ):
        serde.deserialize(data[:-3])


def test_left_over_bytes_mean_another_schema() -> None:
    data = AvroSerde(USER_V1).serialize({"name": "a", "age": 1, "comment": "long comment"})
    narrower = {"type": "record", "name": "N", "fields": [{"name": "name", "type": "string"}]}
    with pytest.raises(AvroDecodeError, match=r"bytes left over after an Avro record of record N"):
        AvroSerde(narrower).deserialize(data)


@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_decode_or_raise_avro_decode_error(data: bytes) -> None:
    for serde in (AvroSerde(ORDER), AvroSerde(USER_V1, reader_schema=USER_V2)):
        with contextlib.suppress(AvroDecodeError):
            serde.deserialize(data)


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_random_bytes_after_a_valid_header_raise_avro_decode_error(body: bytes) -> None:
    registry = MemorySchemaRegistry()
    serde = ConfluentAvroSerde(registry, "orders-value", schema=ORDER)
    with contextlib.suppress(AvroDecodeError):
        serde.deserialize(b"\x00" + serde.schema_id.to_bytes(4, "big") + body)


# --- bad values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quantity": "2"}, r"field shop\.Order\.quantity is '2' \(str\), expected int"),
        ({"quantity": 2**31}, r"field shop\.Order\.quantity is 2147483648 \(int\), expected int"),
        ({"paid": 1}, r"field shop\.Order\.paid is 1 \(int\), expected boolean"),
        ({"customer": None}, r"field shop\.Order\.customer is missing or None, expected string"),
        ({"status": "LOST"}, r"field shop\.Order\.status is 'LOST' \(str\), expected shop\.Status"),
        ({"note": 5}, r"field shop\.Order\.note is 5 \(int\), expected null or string"),
        ({"address": {"street": "x", "zip": "z"}}, r"field shop\.Address\.zip is 'z'"),
        (
            {"lines": [{"sku": 1, "count": 1}]},
            r"field shop\.Line\.sku is 1 \(int\), expected string",
        ),
        (
            {"checksum": b"abc"},
            r"field shop\.Order\.checksum is b'abc' \(bytes\), expected shop\.Checksum",
        ),
    ],
)
def test_a_value_that_does_not_match_names_the_field(changes: dict[str, Any], message: str) -> None:
    for serde in (AvroSerde(ORDER), ConfluentAvroSerde(MemorySchemaRegistry(), "o", schema=ORDER)):
        with pytest.raises(
            AvroEncodeError, match=r"value does not match record shop\.Order: " + message
        ):
            serde.serialize(sample_order(**changes))


def test_a_missing_field_is_named() -> None:
    order = sample_order()
    del order["customer"]
    with pytest.raises(AvroEncodeError, match=r"field shop\.Order\.customer is missing or None"):
        AvroSerde(ORDER).serialize(order)


def test_a_value_that_is_not_a_record_at_all() -> None:
    with pytest.raises(AvroEncodeError, match=r"the value is 'text' \(str\), expected shop\.Order"):
        AvroSerde(ORDER).serialize("text")


def test_without_validation_the_writer_still_refuses_gross_mismatches() -> None:
    serde = AvroSerde(ORDER, validate=False)
    with pytest.raises(AvroEncodeError, match=r"value does not match record shop\.Order"):
        serde.serialize(sample_order(quantity="2"))


def test_avro_errors_are_value_errors() -> None:
    assert issubclass(AvroError, ValueError)
    with pytest.raises(ValueError):
        AvroSerde(ORDER).deserialize(b"\x01")


# --- bad schemas ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            {"type": "record", "fields": []},
            r"schema is not a valid Avro schema .*\"name\" is a required",
        ),
        ({"type": "nope"}, r"schema is not a valid Avro schema \(UnknownType"),
        ("{not json", r"schema is not JSON"),
        ("schemas/order.avsc", r"not JSON .*; to read a schema file, pass a pathlib\.Path"),
        (42, r"schema must be a dict, a list, JSON text or a pathlib\.Path, not int"),
        (
            {
                "type": "record",
                "name": "R",
                "fields": [{"name": "a", "type": "int", "default": "x"}],
            },
            r"Default value <x> must match",
        ),
    ],
)
def test_a_bad_schema_raises_avro_schema_error(schema: Any, message: str) -> None:
    with pytest.raises(AvroSchemaError, match=message):
        AvroSerde(schema)


def test_a_bad_reader_schema_is_named_as_such() -> None:
    with pytest.raises(AvroSchemaError, match=r"^reader schema is not a valid Avro schema"):
        AvroSerde(ORDER, reader_schema={"type": "nope"})


def test_a_missing_schema_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing.avsc"
    with pytest.raises(AvroSchemaError, match=f"schema file {path} cannot be read"):
        AvroSerde(path)


def test_a_schema_file_that_is_not_json_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "broken.avsc"
    path.write_text("{broken")
    with pytest.raises(AvroSchemaError, match=f"schema file {path} is not JSON"):
        AvroSerde(path)


# --- in a topology --------------------------------------------------------------------------


def test_a_topology_reads_and_writes_confluent_avro() -> None:
    registry = MemorySchemaRegistry()
    topology = Topology("avro")
    (
        topology.stream(
            "users",
            key_serde=StringSerde(),
            value_serde=ConfluentAvroSerde(registry, topic_subject("users"), reader_schema=USER_V2),
        )
        .map_values(lambda user: {**user, "name": user["name"].upper()})
        .to(
            "shouted",
            key_serde=StringSerde(),
            value_serde=ConfluentAvroSerde(registry, topic_subject("shouted"), schema=USER_V2),
        )
    )
    driver = TopologyTestDriver(topology)
    old_producer = ConfluentAvroSerde(registry, topic_subject("users"), schema=USER_V1)
    driver.pipe_bytes(
        "users", b"k", old_producer.serialize({"name": "ada", "age": 36, "comment": "x"})
    )
    [record] = driver.read_records("shouted")
    assert record.value is not None and record.value[0] == 0
    reader = ConfluentAvroSerde(registry, topic_subject("shouted"))
    assert reader.deserialize(record.value) == {"name": "ADA", "age": 36, "currency": "EUR"}
    assert sorted(registry.subjects()) == ["shouted-value", "users-value"]
