"""Headless Chromium driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`:
JSON messages separated by NUL bytes on file descriptors 3 and 4), with the standard library
alone. One browser serves a whole test: starting Chromium takes seconds, a page a fraction."""

from __future__ import annotations

import json
import subprocess
import time
from typing import Any, BinaryIO

__all__ = ["Browser"]

# Chromium reads commands on fd 3 and answers on fd 4: the shell hands it our pipes there.
_COMMAND = (
    "exec chromium --headless --disable-gpu --no-sandbox --no-first-run "
    "--remote-debugging-pipe about:blank 3<&0 4>&1 0</dev/null 1>/dev/null 2>/dev/null"
)


class Browser:
    def __init__(self, timeout: float = 30.0) -> None:
        self._process = subprocess.Popen(
            ["sh", "-c", _COMMAND], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        assert self._process.stdin is not None and self._process.stdout is not None
        self._to: BinaryIO = self._process.stdin
        self._from: BinaryIO = self._process.stdout
        self._timeout = timeout
        self._next_id = 0
        self._buffer = b""

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.kill()
            self._process.wait(10)
        self._to.close()
        self._from.close()

    def _call(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer, skipping events."""
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        self._to.write(json.dumps(message).encode() + b"\0")
        self._to.flush()
        while True:
            answer = self._read()
            if answer.get("id") == self._next_id:
                if "error" in answer:
                    raise AssertionError(f"{method}: {answer['error']}")
                result: dict[str, Any] = answer.get("result", {})
                return result

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = self._from.read1(65536)
            if not chunk:
                raise AssertionError("chromium exited")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        parsed: dict[str, Any] = json.loads(message)
        return parsed

    def open(self, url: str) -> str:
        """A new tab at `url`, loaded; its session id."""
        target = self._call("Target.createTarget", url=url)["targetId"]
        session: str = self._call("Target.attachToTarget", targetId=target, flatten=True)[
            "sessionId"
        ]
        self.wait_loaded(session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        answer = self._call("Runtime.evaluate", session, expression=expression, returnByValue=True)
        return answer["result"].get("value")

    def wait_loaded(self, session: str) -> None:
        deadline = time.monotonic() + self._timeout
        # A new tab is complete at once, on about:blank, before it starts on its URL.
        loaded = 'location.href !== "about:blank" && document.readyState === "complete"'
        while not self.evaluate(session, loaded):
            assert time.monotonic() < deadline, "the page did not load"
            time.sleep(0.1)

    def dom(self, session: str) -> str:
        """The tab's document as it is now (the page may have reloaded itself meanwhile)."""
        self.wait_loaded(session)
        html: str = self.evaluate(session, "document.documentElement.outerHTML")
        return html

    def next_load(self, session: str) -> str:
        """The tab's document once the page has loaded again (it reloads itself)."""
        self.evaluate(session, "window.seenBefore = true")
        deadline = time.monotonic() + self._timeout
        while self.evaluate(session, "window.seenBefore === true"):
            assert time.monotonic() < deadline, "the page did not reload itself"
            time.sleep(0.1)
        return self.dom(session)

    def screenshot(self, session: str, width: int, height: int) -> bytes:
        import base64

        self._call(
            "Emulation.setDeviceMetricsOverride",
            session,
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        data = self._call("Page.captureScreenshot", session, format="png")["data"]
        return base64.b64decode(data)
