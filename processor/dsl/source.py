"""Sources outside Kafka (`Topology.source`): a `processor.sources.Source` feeding a topic, whose
records then flow like any input (`processor.topology.external_source`)."""

from __future__ import annotations

import copy
from typing import Any

from processor.dsl.builder import GraphBuilder, check_name
from processor.errors import TopologyError
from processor.serdes import BytesSerde, JsonSerde, Serde, StringSerde
from processor.sources.base import Source
from processor.topology.external_source import ExternalSourceSpec

__all__ = ["declare_source"]


def declare_source(
    builder: GraphBuilder,
    source: Source,
    *,
    topic: str,
    partitions: int,
    key_serde: Serde[Any] | None,
    value_serde: Serde[Any] | None,
    name: str | None,
) -> tuple[str, Serde[Any], Serde[Any]]:
    """Register `source` under `name` (default: the topic) and declare `topic` as a stream
    source; returns that stream's node and its key and value serdes. Keys are strings when the
    source has a key function (bytes otherwise: records have no key), values JSON, unless
    serdes are given."""
    if not isinstance(source, Source):
        raise TopologyError(
            f"source() takes a processor.sources.Source (FileSource, PostgresSource, or a "
            f"subclass of Source), not {type(source).__name__}; to read a Kafka topic use stream()"
        )
    if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
        raise TopologyError(f"source {topic!r}: partitions={partitions!r} must be at least 1")
    source_name = name if name is not None else topic
    check_name("source", source_name)
    if source_name in builder.graph.external_sources:
        raise TopologyError(
            f"two sources are named {source_name!r}; give each topology.source(...) its own name="
        )
    writes_key = key_serde if key_serde is not None else StringSerde() if source.key else None
    value = value_serde if value_serde is not None else JsonSerde()
    key = writes_key if writes_key is not None else BytesSerde()
    node = builder.add_source(topic, key, value, name=None, on_deserialization_error=None)
    named = copy.copy(source)  # one Source object may feed several topics, under their names
    named.name = source_name
    spec = ExternalSourceSpec(source_name, named, topic, partitions, writes_key, value)
    builder.graph.add_external_source(spec)
    return node, key, value
