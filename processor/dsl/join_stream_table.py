"""Stream-table joins (being built: issue 17)."""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError


def stream_table_join(stream: Any, table: Any, joiner: Any, *, how: str, name: str | None) -> Any:
    raise TopologyError("stream-table joins are not available yet")
