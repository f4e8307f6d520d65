"""Destinations outside Kafka: `stream.sink(...)` (see `processor.sinks.base`)."""

from processor.sinks.files import FileSink

__all__ = ["FileSink"]
