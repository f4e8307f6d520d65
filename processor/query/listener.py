"""The socket the query API is served on, taken before anything else of the server exists.

Kept apart from `processor.query.server` (FastAPI, uvicorn) so that a worker can take its port
at once, where a port in use must stop it, and import and build the server afterwards, on a
thread of its own (`processor.runtime.serving`)."""

from __future__ import annotations

import socket

from processor.errors import ConfigError

__all__ = ["BACKLOG", "listen"]

# Connections the kernel queues while the server is still starting, or busy.
BACKLOG = 2048


def listen(host: str, port: int) -> socket.socket:
    """A TCP socket bound to `host`:`port` (0: any free port) and listening: connections made
    from now on wait in its backlog until the server accepts them. Raises `ConfigError`
    naming `http_port` when the address cannot be taken (in use, not this host's)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets it knows are TCP, and
    # without it every answer waited for a delayed ACK (44 ms instead of 2 ms a request).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(
            "http_port",
            f"cannot serve HTTP on {host}:{port}: {e.strerror or e}; choose another port",
        ) from e
    sock.listen(BACKLOG)
    return sock
