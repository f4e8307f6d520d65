"""Destinations outside Kafka: `stream.sink(...)` (see `processor.sinks.base`)."""
