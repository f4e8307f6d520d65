"""Group descriptions asked by a child process, so that librdkafka aborting on the group
coordinator's path ends the child, not the worker.

librdkafka (2.16 and every release before it) aborts the whole process with
`rd_kafka_enq_once_del_source_return: Assertion 'eonce->refcnt > 0' failed` when a
coordinator-bound admin request (DescribeConsumerGroups among them) cannot be sent because its
connection has just dropped: the error path frees what its caller still uses
(confluentinc/librdkafka#5397, not in a release). A worker describes its group every 100 ms while
a rebalance settles, so a broker that went away at that moment killed the worker (seen in the
broker outage test), and a SIGABRT under exactly-once is a failover the user never asked for.

Here one long-lived child (`python -m processor.kafka.group_describer`) makes those requests
with its own admin client. It reads the client's settings as the first line of its standard
input, then one JSON request per line, and answers each with one JSON line. When it dies, or
does not answer in time, the request fails with a `BrokerError` saying so and the next one
starts a new child. It ends when its standard input closes, so it never outlives its worker,
even one killed with SIGKILL. It costs one more process (about 30 MB) per worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from processor.errors import BrokerError

__all__ = ["GroupDescriber", "describable"]

# How long a new child may take to start (import confluent_kafka) on top of a request's time.
_START_GRACE_S = 10.0


def describable(settings: Mapping[str, Any]) -> bool:
    """Whether `settings` can be handed to a child: plain values only (a callback, such as an
    OAuth token refresher, cannot cross a process boundary)."""
    try:
        json.dumps(dict(settings))
    except (TypeError, ValueError):
        return False
    return True


class GroupDescriber:
    """Asks the child for group descriptions, one request at a time; thread-safe."""

    def __init__(self, settings: Mapping[str, Any], timeout: float, answer_within: float) -> None:
        self._settings_line = json.dumps({"settings": dict(settings), "timeout": timeout}) + "\n"
        self._answer_within = answer_within
        self._lock = threading.Lock()
        self._child: subprocess.Popen[bytes] | None = None
        self._pending = b""
        self._closed = False
        self._end_child: weakref.finalize[Any, Any] | None = None
        self._answered = False  # whether the current child has answered yet

    @property
    def child_pid(self) -> int | None:
        return None if self._child is None else self._child.pid

    def describe(self, group_id: str) -> dict[str, Any]:
        """The group as the child's admin client described it: `state` and `members` (each
        `[member_id, client_id, group_instance_id, host]`). Raises `BrokerError`."""
        with self._lock:
            if self._closed:
                raise BrokerError(f"cannot describe group {group_id!r}: the admin is closed")
            doing = f"describing group {group_id!r}"
            if self._child is None:
                self._start(doing)
            within = self._answer_within + (0.0 if self._answered else _START_GRACE_S)
            answer = self._exchange(json.dumps({"group": group_id}) + "\n", within, doing)
            self._answered = True
        if "error" in answer:
            raise BrokerError(str(answer["error"]))
        return answer

    def start(self) -> None:
        """Start the child now, so that the first request does not wait while it starts
        (0.1-0.5 s to import its client): a worker asks for its group at once when it joins.
        Raises `BrokerError`."""
        with self._lock:
            if self._child is None and not self._closed:
                self._start("starting the group-describing child")

    def close(self) -> None:
        """End the child now, failing a request another thread is waiting on."""
        self._closed = True
        child = self._child
        if child is not None and child.poll() is None:
            child.kill()  # without the lock, which a waiting request holds
        with self._lock:
            self._stop()

    def _start(self, doing: str) -> None:
        # The worker's own import path: `processor` may be importable only through it (a
        # checkout put on sys.path by a script, not installed).
        path = os.pathsep.join(p for p in sys.path if p)
        try:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "processor.kafka.group_describer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                close_fds=True,
                env={**os.environ, "PYTHONPATH": path},
            )
        except OSError as e:  # out of processes or memory: the next request tries again
            raise BrokerError(f"{doing}: cannot start the group-describing child: {e}") from e
        # An admin dropped without close() (a tool's, a test's) still ends its child.
        self._end_child = weakref.finalize(self, _end, self._child)
        self._pending = b""
        self._answered = False
        try:
            self._send(self._settings_line)
        except OSError as e:  # it died at once
            ended = self._ended()
            raise BrokerError(f"{doing}: {ended}; the next request starts a new one") from e

    def _stop(self) -> None:
        if self._child is not None and self._end_child is not None:
            self._child = None
            self._end_child()  # once: a finalizer called is done with

    def _send(self, line: str) -> None:
        assert self._child is not None and self._child.stdin is not None
        self._child.stdin.write(line.encode())
        self._child.stdin.flush()

    def _exchange(self, request: str, within: float, doing: str) -> dict[str, Any]:
        """Send `request` (a line); the answer."""
        try:
            self._send(request)
            line = self._read_line(time.monotonic() + within)
        except (BrokenPipeError, ConnectionError, EOFError) as e:
            ended = self._ended()
            raise BrokerError(f"{doing}: {ended}; the next request starts a new one") from e
        if line is None:
            self._stop()
            raise BrokerError(
                f"{doing}: no answer from the group-describing child process within "
                f"{within:.0f}s; stopped it, the next request starts a new one"
            )
        answer: dict[str, Any] = json.loads(line)
        return answer

    def _read_line(self, deadline: float) -> bytes | None:
        """The child's next answer line; None at `deadline`; EOFError when it has ended."""
        assert self._child is not None and self._child.stdout is not None
        fd = self._child.stdout.fileno()
        while b"\n" not in self._pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                raise EOFError
            self._pending += chunk
        line, _, self._pending = self._pending.partition(b"\n")
        return line

    def _ended(self) -> str:
        """What became of the child, which has closed its pipes; forgets it."""
        assert self._child is not None
        try:
            code = self._child.wait(timeout=5.0)
        except subprocess.TimeoutExpired:  # it closed its pipe yet runs on: not ours to wait for
            self._stop()
            return "the group-describing child process closed its pipe; stopped it"
        self._stop()
        if code < 0:
            name = signal.Signals(-code).name
            why = " (librdkafka's abort, confluentinc/librdkafka#5397)" if name == "SIGABRT" else ""
            return f"the group-describing child process was ended by {name}{why}"
        return f"the group-describing child process exited with code {code}"


def _end(child: subprocess.Popen[bytes]) -> None:
    """Kill `child` if it still runs, reap it and close its pipes (again: no harm)."""
    if child.poll() is None:
        child.kill()
    child.wait()
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            # Closing flushes what a write to the dead child left in the buffer: that fails
            # (broken pipe), and the pipe is closed all the same.
            with contextlib.suppress(OSError):
                pipe.close()


def _serve() -> None:
    """The child: answer each request line on standard input until it closes."""
    # Imported here: the parent side of this module must not import `admin` (which imports it).
    from processor.kafka.admin import Admin

    first = json.loads(sys.stdin.readline())
    admin = Admin(first["settings"], timeout=float(first["timeout"]), isolate_groups=False)
    # Connected before the first request comes (a worker asks at once when it joins); a broker
    # that does not answer yet is the first request's to report.
    with contextlib.suppress(BrokerError):
        admin.broker_count()
    for line in sys.stdin:
        group_id = json.loads(line)["group"]
        try:
            snapshot = admin.describe_group(group_id)
        except BrokerError as e:
            answer: dict[str, Any] = {"error": str(e)}
        else:
            answer = {
                "state": snapshot.state,
                "members": [
                    [m.member_id, m.client_id, m.group_instance_id, m.host]
                    for m in snapshot.members
                ],
            }
        sys.stdout.write(json.dumps(answer) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    # Interrupting the worker in a terminal signals its whole process group: the child ends
    # when the worker closes its pipe, not in the middle of an answer.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve()
