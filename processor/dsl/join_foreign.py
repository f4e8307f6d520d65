"""Table-table joins by foreign key (being built: issue 17)."""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError


def foreign_key_join(
    left: Any, right: Any, joiner: Any, *, how: str, foreign_key: Any, name: str | None
) -> Any:
    raise TopologyError("foreign-key joins are not available yet")
