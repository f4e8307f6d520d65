"""Records from outside Kafka: `topology.source(...)` (see `processor.sources.base`).

`PostgresSource` is imported when first asked for: psycopg takes about 0.2 s to import, which
every worker would otherwise pay at start whether or not it reads PostgreSQL."""

from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
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


def __getattr__(name: str) -> Any:
    if name == "PostgresSource":
        from processor.sources.postgres import PostgresSource

        return PostgresSource
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
