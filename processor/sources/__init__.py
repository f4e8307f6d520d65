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
from processor.sources.postgres import PostgresSource

__all__ = [
    "BadLine",
    "FileSource",
    "Position",
    "PostgresSource",
    "Source",
    "SourceError",
    "SourceItem",
    "SourceReader",
    "SourceUnavailableError",
]
