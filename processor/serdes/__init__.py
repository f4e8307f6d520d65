"""Serdes: how keys and values become bytes and back.

The Avro serdes are imported when first asked for: fastavro takes about 0.1-0.2 s to import,
which every worker would otherwise pay at start whether or not it reads Avro."""

from typing import TYPE_CHECKING, Any

from processor.serdes._serde import BytesSerde, IntSerde, JsonSerde, Serde, StringSerde

if TYPE_CHECKING:
    from processor.serdes.avro import (
        AvroDecodeError,
        AvroEncodeError,
        AvroError,
        AvroSchemaError,
        AvroSerde,
        ConfluentAvroSerde,
        topic_subject,
    )

__all__ = [
    "AvroDecodeError",
    "AvroEncodeError",
    "AvroError",
    "AvroSchemaError",
    "AvroSerde",
    "BytesSerde",
    "ConfluentAvroSerde",
    "IntSerde",
    "JsonSerde",
    "Serde",
    "StringSerde",
    "topic_subject",
]

_AVRO = frozenset(
    {
        "AvroDecodeError",
        "AvroEncodeError",
        "AvroError",
        "AvroSchemaError",
        "AvroSerde",
        "ConfluentAvroSerde",
        "topic_subject",
    }
)


def __getattr__(name: str) -> Any:
    if name in _AVRO:
        from processor.serdes import avro

        return getattr(avro, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
