"""Serdes: how keys and values become bytes and back."""

from processor.serdes._serde import BytesSerde, IntSerde, JsonSerde, Serde, StringSerde
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
