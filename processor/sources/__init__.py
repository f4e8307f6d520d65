"""Records from outside Kafka: `topology.source(...)` (see `processor.sources.base`)."""

from processor.sources.base import (
    BadLine,
    Position,
    Source,
    SourceError,
    SourceItem,
    SourceReader,
    SourceUnavailableError,
)
from processor.sources.files import FileSource

__all__ = [
    "BadLine",
    "FileSource",
    "Position",
    "Source",
    "SourceError",
    "SourceItem",
    "SourceReader",
    "SourceUnavailableError",
]
