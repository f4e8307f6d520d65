"""Records from outside Kafka: `topology.source(...)` (see `processor.sources.base`)."""
