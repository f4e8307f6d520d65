"""The exactly-once PostgreSQL sink's progress: one row per sink task in an offsets table of the
target database, written in the same transaction as the task's rows, so the rows and the
offset up to which they were written are committed together or not at all.

```
processor_sink_offsets (application_id, sink, topic, partition) -> next_offset, epoch
```

Ownership is an epoch: `take_over` (at `open()`) increments the task's epoch and remembers it;
every write transaction first locks the task's row (`claim`) and goes on only if the epoch is
still the one it took. A writer whose task was taken over meanwhile (a zombie: a worker that
lost its group membership but does not know yet) is fenced: its transaction writes nothing.
Because the row is locked for the whole write, a take-over waits for a write in flight and a
write after a take-over sees the new epoch: there is no moment when both may write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from processor.sinks.base import SinkFencedError, SinkTask

__all__ = ["OFFSETS_TABLE", "Claim", "SinkOffsets", "TaskOffsets"]

OFFSETS_TABLE = "processor_sink_offsets"
"""The offsets table's name, in the schema the connection creates tables in (`public`)."""

_CREATE = sql.SQL("""
CREATE TABLE IF NOT EXISTS {table} (
    application_id text NOT NULL,
    sink text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint,
    epoch bigint NOT NULL,
    PRIMARY KEY (application_id, sink, topic, partition)
)""")
_TAKE_OVER = sql.SQL("""
INSERT INTO {table} AS o (application_id, sink, topic, partition, next_offset, epoch)
VALUES (%s, %s, %s, %s, NULL, 1)
ON CONFLICT (application_id, sink, topic, partition) DO UPDATE SET epoch = o.epoch + 1
RETURNING epoch, next_offset""")
_CLAIM = sql.SQL("""
SELECT epoch, next_offset FROM {table}
WHERE application_id = %s AND sink = %s AND topic = %s AND partition = %s
FOR UPDATE""")
_ADVANCE = sql.SQL("""
UPDATE {table} SET next_offset = %s
WHERE application_id = %s AND sink = %s AND topic = %s AND partition = %s""")

_EXISTS = "SELECT to_regclass(%s) IS NOT NULL"
_CLEAR = sql.SQL("DELETE FROM {table} WHERE application_id = %s AND sink = %s AND topic = %s")


@dataclass(frozen=True)
class Claim:
    """What a write transaction found on the task's locked row."""

    next_offset: int | None


class TaskOffsets:
    """One sink task's row of the offsets table, for the writer that owns (or owned) it."""

    def __init__(self, task: SinkTask, sink: str) -> None:
        self._task = task
        self._sink = sink
        self._table = sql.Identifier(OFFSETS_TABLE)
        self._key = (task.application_id, task.sink, task.topic, task.partition)
        self.epoch: int | None = None

    def take_over(self, conn: psycopg.Connection[tuple[Any, ...]]) -> int | None:
        """Become the task's owner (fencing the previous one); the next offset it recorded."""
        with conn.transaction():
            # Two writers creating the table at once would collide in the catalog: one waits.
            conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (OFFSETS_TABLE,))
            conn.execute(_CREATE.format(table=self._table))
            row = conn.execute(_TAKE_OVER.format(table=self._table), self._key).fetchone()
        assert row is not None  # INSERT ... RETURNING always returns the row
        self.epoch = int(row[0])
        return None if row[1] is None else int(row[1])

    def claim(self, conn: psycopg.Connection[tuple[Any, ...]]) -> Claim:
        """Lock the task's row for this transaction; `SinkFencedError` if another writer took
        the task over since our `take_over`."""
        row = conn.execute(_CLAIM.format(table=self._table), self._key).fetchone()
        epoch = None if row is None else int(row[0])
        if row is None or epoch != self.epoch:
            raise SinkFencedError(
                self._sink,
                f"task {self._task.task_name} was taken over by another writer (epoch "
                f"{epoch} in {OFFSETS_TABLE}, ours {self.epoch}): this writer stops, the new "
                "owner writes from the recorded offset",
            )
        return Claim(None if row[1] is None else int(row[1]))

    def advance(self, conn: psycopg.Connection[tuple[Any, ...]], next_offset: int) -> None:
        """Record `next_offset` in the current (claimed) transaction."""
        conn.execute(_ADVANCE.format(table=self._table), (next_offset, *self._key))


@dataclass(frozen=True)
class SinkOffsets:
    """Every task's row of one sink reading `topic` for `application_id`: its progress, which
    `processor reset` clears (`processor.sinks.base.SinkProgress`), so that the sink writes
    again from the start of the topic. `connect` opens an autocommit connection; `where` names
    the database without secrets."""

    connect: Callable[[], psycopg.Connection[tuple[Any, ...]]]
    where: str
    application_id: str
    sink: str
    topic: str

    def describe(self) -> str:
        return (
            f"the progress of sink {self.sink!r} on {self.topic}: the rows of application "
            f"{self.application_id!r} in table {OFFSETS_TABLE} of {self.where}"
        )

    def clear(self) -> str:
        with self.connect() as conn:
            [exists] = conn.execute(_EXISTS, (OFFSETS_TABLE,)).fetchone() or (False,)
            deleted = 0
            if exists:
                key = (self.application_id, self.sink, self.topic)
                deleted = conn.execute(
                    _CLEAR.format(table=sql.Identifier(OFFSETS_TABLE)), key
                ).rowcount
        return f"cleared {deleted} rows of {self.describe()[len('the ') :]}"
