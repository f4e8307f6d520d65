"""The worker's query API, status page and /metrics as a running server: built and started on
`processor.runtime.serving`'s thread, which is why this module is imported there, not at the
worker's start (FastAPI, pydantic, uvicorn and httpx take about half a second to import)."""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

from processor.query.limits import QueryLimits
from processor.query.server import QueryServer, build_app
from processor.query.source import StoreInfo
from processor.query.status_routes import StatusSource
from processor.runtime.query_source import RuntimeView, WorkerQuerySource
from processor.status.graph import topology_svg
from processor.topology.graph import StoreKind

if TYPE_CHECKING:
    from processor.runtime.assembly import WorkerParts
    from processor.runtime.task_plan import TaskPlan

__all__ = ["start_server"]


def start_server(
    parts: WorkerParts, plan: TaskPlan, view: RuntimeView, listening: socket.socket
) -> QueryServer:
    """The query API over `view`, served on `listening`."""
    cfg = parts.config
    stores = {
        spec.name: StoreInfo(spec, sub.id, plan.task_count(sub.id))
        for sub in parts.subtopologies.values()
        for spec in sub.stores
        # Internal to their operator: timers, a stream-stream join's buffers.
        if spec.kind not in (StoreKind.TIMERS, StoreKind.JOIN_BUFFER)
    }
    source = WorkerQuerySource(view, stores)
    status = StatusSource(
        application=cfg.application_id,
        instance_id=parts.instance_id,
        metrics=parts.metrics,
        topology_svg=topology_svg(sorted(parts.subtopologies.values(), key=lambda s: s.id)),
        known=source.known_instances,
        token=cfg.http_token,
    )
    app = build_app(
        source,
        token=cfg.http_token,
        registry=parts.metrics.registry,
        limits=QueryLimits.from_config(cfg),
        status=status,
    )
    return QueryServer(app, cfg.http_host, cfg.http_port or 0, listening=listening)
