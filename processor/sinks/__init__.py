"""Destinations outside Kafka: `stream.sink(...)` (see `processor.sinks.base`).

`PostgresSink` is imported on first use, so that importing the sink contract (as the DSL and
the runtime do) does not load psycopg.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from processor.sinks.postgres import PostgresSink

__all__ = ["PostgresSink"]


def __getattr__(name: str) -> Any:
    if name == "PostgresSink":
        from processor.sinks.postgres import PostgresSink

        return PostgresSink
    raise AttributeError(f"module 'processor.sinks' has no attribute {name!r}")
