"""Avro serdes (fastavro): plain schemaless Avro, and Confluent's wire format with a registry.

`AvroSerde(schema)` writes and reads the bare Avro binary encoding of one value, the schema
known to both sides. `ConfluentAvroSerde(registry, subject, schema=...)` writes what Confluent's
`KafkaAvroSerializer` writes: a magic byte 0, the writer schema's registry id in 4 big-endian
bytes, then the Avro body; it reads any record in that format by fetching the writer schema by
its id. A schema is a dict (or list, for a union), JSON text, or a `Path` to an `.avsc` file.

Schema evolution: records are decoded with the schema they were written with and, when the serde
has a `reader_schema`, resolved to it by Avro's rules (a field the reader added comes back with
its default, a field the reader dropped is skipped). Without a `reader_schema` they come back as
written.

Errors (each also a `ValueError`, so code that catches a serde's ValueError catches these):

```
ProcessorError
└── AvroError
    ├── AvroSchemaError   a schema cannot be read, or is not valid Avro
    ├── AvroEncodeError   a value does not match the writer schema (names the field)
    └── AvroDecodeError   bytes are not a record of the schema: truncated, left-over bytes,
                          not Confluent wire format, or not resolvable to the reader schema
```

The Confluent serde takes its registry as an object (`processor.kafka.schema_registry.
SchemaRegistry`, or any object with the `Registry` methods), so this module never imports a
Kafka client; the registry's own errors (unreachable, unknown schema id) pass through.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.read import SchemaResolutionError
from fastavro.validation import ValidationError, validate

from processor.errors import ProcessorError
from processor.serdes._serde import _NullPassing

__all__ = [
    "AvroDecodeError",
    "AvroEncodeError",
    "AvroError",
    "AvroSchema",
    "AvroSchemaError",
    "AvroSerde",
    "ConfluentAvroSerde",
    "Registry",
    "topic_subject",
]

AvroSchema = Mapping[str, Any] | Sequence[Any] | str | Path
"""An Avro schema: parsed JSON (a dict, or a list for a union), JSON text, or a `.avsc` file."""

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")  # magic byte, schema id
_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


class AvroError(ProcessorError, ValueError):
    """An Avro schema, value or encoding is wrong."""


class AvroSchemaError(AvroError):
    """A schema cannot be read, or is not a valid Avro schema."""


class AvroEncodeError(AvroError):
    """A value does not match the schema it is written with."""


class AvroDecodeError(AvroError):
    """Bytes are not an Avro record of the expected schema, or not in the expected framing."""


class Registry(Protocol):
    """What the Confluent serde needs of a schema registry (`SchemaRegistry` has it)."""

    @property
    def url(self) -> str: ...

    def register(self, subject: str, schema_str: str) -> int:
        """Register the schema under the subject, or find it there; its id."""
        ...

    def lookup(self, subject: str, schema_str: str) -> int:
        """The id of a schema already registered under the subject."""
        ...

    def schema_by_id(self, schema_id: int) -> str:
        """The text of the schema with this id."""
        ...


def topic_subject(topic: str, *, key: bool = False) -> str:
    """The subject Confluent's default naming (TopicNameStrategy) gives a topic's values,
    `<topic>-value`, or with `key=True` its keys, `<topic>-key`."""
    return f"{topic}-{'key' if key else 'value'}"


# --- schemas ------------------------------------------------------------------------------------


class _Schema:
    """One schema, parsed once: its JSON text (compact, as given) and fastavro's form."""

    __slots__ = ("label", "parsed", "text")

    def __init__(self, definition: Any, origin: str) -> None:
        try:
            self.text = json.dumps(definition, separators=(",", ":"), ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise AvroSchemaError(f"{origin} is not JSON-serializable: {e}") from e
        try:
            # A JSON round trip gives fastavro plain dicts and lists it may keep, never the
            # caller's objects.
            self.parsed: Any = parse_schema(json.loads(self.text))
        except Exception as e:  # fastavro raises several types for a bad schema
            raise AvroSchemaError(
                f"{origin} is not a valid Avro schema ({type(e).__name__}: {e})"
            ) from e
        self.label = _label(self.parsed)


def _label(parsed: Any) -> str:
    if isinstance(parsed, dict):
        name = parsed.get("name")
        kind = parsed.get("type")
        return f"{kind} {name}" if name else f"schema {kind}"
    if isinstance(parsed, list):
        return f"union schema [{', '.join(_type_name(branch) for branch in parsed)}]"
    return f"schema {parsed}"


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("name") or schema.get("type"))
    if isinstance(schema, list):
        return " or ".join(_type_name(branch) for branch in schema)
    return str(schema)


def _load(schema: AvroSchema, what: str) -> _Schema:
    if isinstance(schema, Path):
        try:
            text = schema.read_text(encoding="utf-8")
        except OSError as e:
            raise AvroSchemaError(f"{what} file {schema} cannot be read: {e}") from e
        return _from_text(text, f"{what} file {schema}")
    if isinstance(schema, str):
        return _from_text(schema, what)
    if isinstance(schema, Mapping | Sequence) and not isinstance(schema, bytes | bytearray):
        return _Schema(dict(schema) if isinstance(schema, Mapping) else list(schema), what)
    raise AvroSchemaError(
        f"{what} must be a dict, a list, JSON text or a pathlib.Path, not {type(schema).__name__}"
    )


def _from_text(text: str, origin: str) -> _Schema:
    stripped = text.strip()
    if stripped in _PRIMITIVES:
        return _Schema(stripped, origin)
    try:
        definition = json.loads(stripped)
    except json.JSONDecodeError as e:
        hint = (
            "; to read a schema file, pass a pathlib.Path"
            if stripped.endswith((".avsc", ".json"))
            else ""
        )
        raise AvroSchemaError(f"{origin} is not JSON ({e}){hint}") from e
    return _Schema(definition, origin)


# --- encoding and decoding ------------------------------------------------------------------------


def _describe_mismatch(error: ValidationError, label: str) -> str:
    expected: dict[str, list[str]] = {}
    datum: dict[str, Any] = {}
    for item in error.errors:
        expected.setdefault(item.field, []).append(_type_name(item.schema))
        datum.setdefault(item.field, item.datum)
    if len(expected) > 1:
        # A value in a union fails every branch: ["null", Address] reports the field as "not
        # null" and, from the Address branch, the inner field that is wrong. The inner one
        # explains it; the "expected null" is noise.
        for field in list(expected):
            if datum[field] is not None:
                expected[field] = [t for t in expected[field] if t != "null"]
                if not expected[field]:
                    del expected[field]
    problems = []
    for field, types in expected.items():
        want = " or ".join(dict.fromkeys(types))
        where = f"field {field}" if field else "the value"
        value = datum[field]
        if value is None:
            problems.append(f"{where} is missing or None, expected {want}")
        else:
            shown = repr(value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            problems.append(f"{where} is {shown} ({type(value).__name__}), expected {want}")
    return f"value does not match {label}: {'; '.join(problems)}"


def _encode(into: io.BytesIO, schema: _Schema, value: Any, check: bool) -> None:
    if check:
        try:
            validate(value, schema.parsed, raise_errors=True)
        except ValidationError as e:
            raise AvroEncodeError(_describe_mismatch(e, schema.label)) from e
    try:
        schemaless_writer(into, schema.parsed, value)
    except Exception as e:  # fastavro raises TypeError, ValueError, AttributeError, ...
        raise AvroEncodeError(
            f"value does not match {schema.label} ({type(e).__name__}: {e})"
        ) from e


def _decode(data: bytes, offset: int, writer: _Schema, reader: _Schema | None, context: str) -> Any:
    source = io.BytesIO(data)
    source.seek(offset)
    try:
        value = schemaless_reader(source, writer.parsed, reader.parsed if reader else None)
    except EOFError as e:
        raise AvroDecodeError(
            f"truncated Avro record for {writer.label}{context}: the data ends in the middle of "
            f"it, after {len(data) - offset} bytes ({str(e) or 'end of data'})"
        ) from e
    except SchemaResolutionError as e:
        raise AvroDecodeError(
            f"a record written with {writer.label}{context} cannot be read with reader "
            f"{(reader or writer).label}: {e}"
        ) from e
    except Exception as e:  # random bytes fail in many ways: bad UTF-8, union index, ...
        raise AvroDecodeError(
            f"not an Avro record of {writer.label}{context} ({type(e).__name__}: {e})"
        ) from e
    left = len(data) - source.tell()
    if left:
        raise AvroDecodeError(
            f"{left} bytes left over after an Avro record of {writer.label}{context}: the data "
            "was written with another schema, or is not Avro"
        )
    return value


# --- the serdes ---------------------------------------------------------------------------------


class AvroSerde(_NullPassing[Any]):
    """Plain Avro binary, no framing: both sides must know the schema.

    Arguments:
        schema: the schema values are written with, and that the bytes read were written with.
        reader_schema: decode into this schema instead (Avro schema resolution); default: none,
            values come back as written.
        validate: check each value against `schema` before writing it, so a mismatch names the
            field (default True; it takes two to three times as long as the encoding itself).
            Without it fastavro still refuses most mismatches, less precisely, and lets some
            through (an int out of the 32-bit range, a bool for an int).
    """

    name = "avro"

    def __init__(
        self,
        schema: AvroSchema,
        *,
        reader_schema: AvroSchema | None = None,
        validate: bool = True,
    ) -> None:
        self._writer = _load(schema, "schema")
        self._reader = None if reader_schema is None else _load(reader_schema, "reader schema")
        self._validate = validate

    @property
    def schema(self) -> str:
        """The writer schema as compact JSON text."""
        return self._writer.text

    def _to_bytes(self, value: Any) -> bytes:
        out = io.BytesIO()
        _encode(out, self._writer, value, self._validate)
        return out.getvalue()

    def _from_bytes(self, data: bytes) -> Any:
        return _decode(data, 0, self._writer, self._reader, "")

    def __repr__(self) -> str:
        reader = f", reader={self._reader.label}" if self._reader else ""
        return f"AvroSerde({self._writer.label}{reader})"


class ConfluentAvroSerde(_NullPassing[Any]):
    """Avro in Confluent's wire format: magic byte 0, a 4-byte big-endian schema id, the body.

    Arguments:
        registry: the schema registry (`processor.kafka.schema_registry.SchemaRegistry`).
        subject: the subject the writer schema is registered under; Confluent's convention is
            `topic_subject(topic)`, i.e. `<topic>-value` (or `<topic>-key`).
        schema: the schema to write with; needed only to serialize. It is registered (or found)
            under `subject` on the first write, and its id is kept.
        reader_schema: decode every record into this schema (Avro schema resolution), whatever
            schema it was written with; default: none, records come back as written.
        auto_register: register `schema` when it is not under `subject` yet (default True);
            False only looks it up, and a schema not registered there is an error.
        validate: check each value against `schema` before writing (see `AvroSerde`).

    Writer schemas are fetched from the registry once per schema id and kept.
    """

    name = "confluent-avro"

    def __init__(
        self,
        registry: Registry,
        subject: str,
        *,
        schema: AvroSchema | None = None,
        reader_schema: AvroSchema | None = None,
        auto_register: bool = True,
        validate: bool = True,
    ) -> None:
        self.registry = registry
        self.subject = subject
        self._writer = None if schema is None else _load(schema, "schema")
        self._reader = None if reader_schema is None else _load(reader_schema, "reader schema")
        self._auto_register = auto_register
        self._validate = validate
        self._schema_id: int | None = None
        self._writers: dict[int, _Schema] = {}

    @property
    def schema_id(self) -> int:
        """The registry id of `schema`, registering or looking it up on first use."""
        if self._schema_id is None:
            if self._writer is None:
                raise AvroEncodeError(
                    f"{self!r} has no schema to write with; give it schema=... to serialize"
                )
            if self._auto_register:
                schema_id = self.registry.register(self.subject, self._writer.text)
            else:
                schema_id = self.registry.lookup(self.subject, self._writer.text)
            self._writers.setdefault(schema_id, self._writer)
            self._schema_id = schema_id
        return self._schema_id

    def _to_bytes(self, value: Any) -> bytes:
        schema_id = self.schema_id  # raises when there is no schema
        assert self._writer is not None
        out = io.BytesIO()
        out.write(_HEADER.pack(MAGIC_BYTE, schema_id))
        _encode(out, self._writer, value, self._validate)
        return out.getvalue()

    def _from_bytes(self, data: bytes) -> Any:
        if len(data) < _HEADER.size:
            if data and data[0] != MAGIC_BYTE:
                raise self._not_wire_format(data[0])
            raise AvroDecodeError(
                f"not Confluent wire format: {len(data)} bytes, fewer than the 5-byte header "
                "(magic byte 0x00 and a 4-byte schema id)"
            )
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise self._not_wire_format(data[0])
        writer = self._writer_schema(schema_id)
        return _decode(data, _HEADER.size, writer, self._reader, f" (schema id {schema_id})")

    def _writer_schema(self, schema_id: int) -> _Schema:
        writer = self._writers.get(schema_id)
        if writer is None:
            text = self.registry.schema_by_id(schema_id)
            writer = _from_text(
                text, f"schema id {schema_id} from the registry at {self.registry.url}"
            )
            self._writers[schema_id] = writer
        return writer

    @staticmethod
    def _not_wire_format(first: int) -> AvroDecodeError:
        return AvroDecodeError(
            f"not Confluent wire format: first byte 0x{first:02x}, expected magic byte 0x00"
        )

    def __repr__(self) -> str:
        return f"ConfluentAvroSerde({self.subject!r} at {self.registry.url})"
