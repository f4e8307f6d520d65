"""A local HTTP service for tests of async operators: `GET /echo?v=X` answers X after `delay_s`,
or 503 for a share `error_rate` of the requests; `down()` makes it refuse every request (503)
until `up()`. Served on 127.0.0.1, a free port, from threads of the test process; counts the
requests it answered per value."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


class EchoService:
    def __init__(self, *, delay_s: float = 0.005, error_rate: float = 0.0, seed: int = 1) -> None:
        self.delay_s = delay_s
        self.error_rate = error_rate
        self.answered: Counter[str] = Counter()
        self.refused = 0
        self._down = False
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                value = parse_qs(urlparse(self.path).query).get("v", [""])[0]
                time.sleep(service.delay_s)
                with service._lock:
                    failing = service._down or service._rng.random() < service.error_rate
                    if failing:
                        service.refused += 1
                    else:
                        service.answered[value] += 1
                body = value.encode()
                self.send_response(503 if failing else 200)
                self.send_header("Content-Length", str(0 if failing else len(body)))
                self.end_headers()
                if not failing:
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def down(self) -> None:
        self._down = True

    def up(self) -> None:
        self._down = False

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
