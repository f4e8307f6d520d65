"""Table operations and table-table joins (being built: issue 17)."""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError


def table_table_join(left: Any, right: Any, joiner: Any, *, how: str, name: str | None) -> Any:
    raise TopologyError("table-table joins are not available yet")
