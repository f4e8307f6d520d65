"""Serdes: how keys and values become bytes and back."""

from processor.serdes._serde import BytesSerde, IntSerde, JsonSerde, Serde, StringSerde

__all__ = ["BytesSerde", "IntSerde", "JsonSerde", "Serde", "StringSerde"]
