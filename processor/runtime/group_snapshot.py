"""The group's description for a new generation, asked on a thread of its own.

A worker that joined a generation asks the group coordinator for the group's description every
100 ms until the group is Stable with this worker in it (`processor.runtime.rebalance`). Each
answer takes a metadata request and a DescribeGroups round trip, 20-150 ms on a busy machine;
asked on the main loop, every task of the worker would wait for each of them, the tasks that keep
their owner through the rebalance too. Here the question runs on a daemon thread and the main
loop only looks whether the answer has come.

An answer asked before the latest generation began may describe the group before it (Stable,
with this member in it, yet with other members): `forget()` drops it when a generation begins.
"""

from __future__ import annotations

import time
from concurrent.futures import Future

from processor.background_call import in_background
from processor.kafka.admin import Admin, GroupSnapshot

__all__ = ["SnapshotRequests", "shows"]


class SnapshotRequests:
    """One description of `group_id` at a time, asked in the background."""

    def __init__(self, admin: Admin, group_id: str) -> None:
        self._admin = admin
        self._group_id = group_id
        self._future: Future[GroupSnapshot] | None = None
        self.asked_at = 0.0
        """When the answer last taken (or the one awaited) was asked for (monotonic)."""

    @property
    def waiting(self) -> bool:
        return self._future is not None

    def answer(self) -> GroupSnapshot | None:
        """The description once it has come, asking for one when none is on its way; None
        while waiting. Raises the request's `BrokerError` (the next call asks again)."""
        future = self._future
        if future is None:
            self._ask()
            return None
        if not future.done():
            return None
        self._future = None
        return future.result()

    def forget(self) -> None:
        """Drop the answer on its way: a new generation began after it was asked for."""
        self._future = None

    def _ask(self) -> None:
        admin, group_id = self._admin, self._group_id
        self._future = in_background(
            lambda: admin.describe_group(group_id), "processor-group-snapshot"
        )
        self.asked_at = time.monotonic()


def shows(snapshot: GroupSnapshot, member_id: str | None, client_id: str) -> bool:
    """Whether `snapshot` shows member `member_id` with the client id it joined with (a
    coordinator still loading has been seen to describe members without their client ids)."""
    own = [m for m in snapshot.members if m.member_id == member_id]
    return bool(own) and own[0].client_id == client_id
