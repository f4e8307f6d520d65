"""Stream-stream joins (being built: issue 17)."""

from __future__ import annotations

from typing import Any

from processor.errors import TopologyError


def stream_stream_join(
    left: Any, right: Any, joiner: Any, *, how: str, window: Any, name: str | None
) -> Any:
    raise TopologyError("stream-stream joins are not available yet")
