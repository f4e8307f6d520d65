"""A local HTTP service to test and measure topologies that call services (async operators):
`GET /echo?v=X` answers `X` after a delay (fixed, or drawn between `delay_s` and
`max_delay_s`), or `503` for a share `error_rate` of the requests, or for every request while
it is `down()`. HTTP/1.1 with keep-alive, served by an asyncio loop on a thread of its own, on
127.0.0.1 and a free port; it counts what it answered.

>>> service = EchoService(delay_s=0.001)
>>> import httpx
>>> httpx.get(f"{service.url}/echo", params={"v": "hi"}).text
'hi'
>>> service.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import Counter
from urllib.parse import parse_qs, urlparse

__all__ = ["EchoService"]


class EchoService:
    def __init__(
        self,
        *,
        delay_s: float = 0.005,
        max_delay_s: float | None = None,
        error_rate: float = 0.0,
        seed: int = 1,
    ) -> None:
        self.delay_s = delay_s
        self.max_delay_s = max_delay_s
        self.error_rate = error_rate
        self.answered: Counter[str] = Counter()
        self.refused = 0
        self._down = False
        self._rng = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._serve, args=(started,), name="echo-service", daemon=True
        )
        self._thread.start()
        started.wait(10)
        assert self._server is not None, "the echo service did not start"
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def down(self) -> None:
        """Refuse every request (503) until `up()`."""
        self._down = True

    def up(self) -> None:
        self._down = False

    def close(self) -> None:
        if self._loop.is_closed():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._thread.join(10)

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        # Closing each connection ends its handler (its next read finds the end).
        for writer in list(self._writers):
            writer.close()
        current = asyncio.current_task()
        handlers = [t for t in asyncio.all_tasks() if t is not current]
        await asyncio.wait(handlers, timeout=5) if handlers else None
        self._loop.call_soon(self._loop.stop)

    def _serve(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        )
        started.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                target = head.split(b" ", 2)[1].decode()
                await self._answer(target, writer)
        except (asyncio.IncompleteReadError, ConnectionError, IndexError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _answer(self, target: str, writer: asyncio.StreamWriter) -> None:
        value = parse_qs(urlparse(target).query).get("v", [""])[0]
        delay = self.delay_s
        if self.max_delay_s is not None:
            delay = self._rng.uniform(self.delay_s, self.max_delay_s)
        await asyncio.sleep(delay)
        if self._down or self._rng.random() < self.error_rate:
            self.refused += 1
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
        else:
            self.answered[value] += 1
            body = value.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        await writer.drain()
