"""The worker's query API, status page and /metrics, started beside the rest of its start.

```
main thread:    QueryService(...)  ------------------  serve(plan, view)  ...  close()
                  takes the port (ConfigError: in use)    hands over what the app reads
serving thread:     import FastAPI, uvicorn ... (~0.5 s) --> build the app, start uvicorn
                                                              log "serving the query API ..."
```

The port is taken at once, on the main thread, so a port in use stops the worker as it always
did (`ConfigError` naming `http_port`), and the endpoint published on the metadata topic is
known from the start. Connections made before the server runs wait in the socket's backlog.
Everything else (importing the HTTP stack, building the app, starting uvicorn) happens on a
thread of its own while the main thread checks the topics and joins the group; a failure there
is raised on the main thread at its next `raise_if_failed()` (`processor.runtime.background`).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING

from processor.config import WorkerConfig
from processor.query.listener import listen
from processor.runtime.background import BackgroundStart

if TYPE_CHECKING:
    from processor.query.server import QueryServer
    from processor.runtime.assembly import WorkerParts
    from processor.runtime.query_source import RuntimeView
    from processor.runtime.task_plan import TaskPlan

__all__ = ["QueryService", "endpoint_of"]

log = logging.getLogger("processor.worker")

WHAT = "the query API and /metrics"


@dataclass(frozen=True)
class _Inputs:
    plan: TaskPlan
    view: RuntimeView


class QueryService:
    """The HTTP server of one worker: its socket now, the rest on the serving thread."""

    def __init__(self, parts: WorkerParts) -> None:
        cfg = parts.config
        self._parts = parts
        self._listening = listen(cfg.http_host, cfg.http_port or 0)
        self.port: int = self._listening.getsockname()[1]
        self.endpoint = endpoint_of(cfg, self.port)
        # What the app reads, once the worker has made it; None: stop without serving.
        self._inputs: queue.Queue[_Inputs | None] = queue.Queue(maxsize=1)
        self._start: BackgroundStart[QueryServer | None] = BackgroundStart(
            WHAT, self._serve, _close_server, thread_name="processor-http-start"
        )

    def serve(self, plan: TaskPlan, view: RuntimeView) -> None:
        """Serve the app over `view` once it is built (on the serving thread)."""
        self._inputs.put_nowait(_Inputs(plan, view))

    def raise_if_failed(self) -> None:
        """Raise why the server could not start, if it could not (see `BackgroundStart`)."""
        self._start.raise_if_failed()

    def wait(self, timeout: float) -> QueryServer | None:
        """The server once it serves (None: not within `timeout` s, or it failed)."""
        return self._start.wait(timeout)

    def close(self) -> None:
        with contextlib.suppress(queue.Full):  # full: it has its inputs already
            self._inputs.put_nowait(None)  # a start still waiting for its inputs ends
        self._start.close()
        self._listening.close()

    # --- serving thread

    def _serve(self) -> QueryServer | None:
        from processor.runtime import query_app  # the HTTP stack: imported here, off the start

        inputs = self._inputs.get()
        if inputs is None:
            return None  # closed before the worker got this far
        server = query_app.start_server(self._parts, inputs.plan, inputs.view, self._listening)
        log.info(
            "worker %s: serving the query API and /metrics on http://%s:%d (endpoint %s)",
            self._parts.instance_id,
            self._parts.config.http_host,
            self.port,
            self.endpoint,
        )
        return server


def _close_server(server: QueryServer | None) -> None:
    if server is not None:
        server.close()


def endpoint_of(cfg: WorkerConfig, port: int) -> str:
    """Where other workers reach this one's query API."""
    host = cfg.http_host if cfg.http_host not in ("0.0.0.0", "::", "") else socket.getfqdn()
    if ":" in host and not host.startswith("["):  # IPv6: bracketed in a URL
        host = f"[{host}]"
    return f"http://{host}:{port}"
