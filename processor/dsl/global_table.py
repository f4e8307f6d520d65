"""Global tables (being built: issue 17)."""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError


class GlobalTable:
    """A topic read whole by every worker (not available yet)."""


def stream_global_join(
    stream: Any, table: GlobalTable, joiner: Any, *, how: str, key: Any, name: str | None
) -> Any:
    raise TopologyError("joins with global tables are not available yet")
