"""Restore progress in a terminal, for `processor run` when its stderr is one: below the log,
one line per restoring task (a bar, records, records/s, time left), redrawn in place about
twice a second from the figures the worker's main loop publishes (`WorkerMetrics.snapshot`).
A log line is written above the bars: the bars are erased, the line written, the bars drawn
again. Anywhere else (a file, a pipe, a container's log) stderr keeps plain log lines."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TextIO

from processor.metrics import WorkerSnapshot
from processor.status.text import progress_text
from processor.status.view import RESTORING, figures_of

__all__ = ["ProgressConsole", "progress_lines", "show_restores"]

REDRAW_INTERVAL_S = 0.5


def progress_lines(snapshot: WorkerSnapshot) -> list[str]:
    """One line per task restoring here."""
    return [
        f"restoring {task.task}  {progress_text(task)}"
        for task in figures_of(snapshot, None).tasks
        if task.state == RESTORING
    ]


class ProgressConsole(logging.Handler):
    """A log handler writing to `stream` (a terminal) with progress lines kept below the log."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # called holding self.lock
        try:
            text = self.format(record)
            self._erase()
            self._stream.write(text + "\n")
            self._draw()
            self._stream.flush()
        except Exception:
            self.handleError(record)

    def show(self, lines: list[str]) -> None:
        """Replace the progress lines (none: clear them)."""
        self.acquire()
        try:
            self._erase()
            self._lines = lines
            self._draw()
            self._stream.flush()
        finally:
            self.release()

    def _erase(self) -> None:
        if self._lines:
            # To the start of the first progress line, then clear to the end of the screen.
            self._stream.write(f"\x1b[{len(self._lines)}F\x1b[J")

    def _draw(self) -> None:
        for line in self._lines:
            self._stream.write(line + "\n")


def show_restores(
    stream: TextIO, snapshot: Callable[[], WorkerSnapshot], done: threading.Event
) -> threading.Thread:
    """Put a `ProgressConsole` in place of the root logger's handlers (keeping their format)
    and redraw the restoring tasks of `snapshot()` until `done` is set; then clear them."""
    root = logging.getLogger()
    console = ProgressConsole(stream)
    if root.handlers:
        console.setFormatter(root.handlers[0].formatter)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(console)

    def redraw() -> None:
        while not done.wait(REDRAW_INTERVAL_S):
            console.show(progress_lines(snapshot()))
        console.show([])

    thread = threading.Thread(target=redraw, name="processor-progress", daemon=True)
    thread.start()
    return thread
