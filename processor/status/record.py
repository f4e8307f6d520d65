"""What each instance tells the application about itself on `<application_id>-metadata`.

One record per instance (key: its instance id), the latest winning (the topic is compacted).
Workers read every instance's status: a joining worker announces itself there before it joins
the group, so that the others pre-warm the tasks they will gain, and they report back how far
behind those warm copies are (`lags`), which the joiner waits on.

Anyone who can write the topic can put anything there, and a record stays until compaction
removes it, so every worker reads it again at every start: nothing read there may stop a
worker. `StatusBoard.apply` takes a status only when every field validates
(`processor.status.fields`), and otherwise ignores the record, counts it and logs it
(once per instance id), never raising. Reading is bounded: a value over `MAX_STATUS_BYTES` is
refused unread, JSON nested deeper than the parser's recursion limit is refused by the parser,
and the fields are checked one level deep. With an HTTP token, statuses are signed
(`processor.status.signing`) and an unsigned or wrongly signed one is ignored as well,
checked before the value is parsed.

Freshness is judged by the reader's clocks, not the sender's: an instance counts as a joiner
while its announcement was *received* recently (monotonic clock), and a status dated more than
`MAX_CLOCK_AHEAD_MS` ahead of the reader's wall clock is refused, so no status can make itself a
joiner forever.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from enum import Enum

from processor.ids import TaskId
from processor.status import fields
from processor.status.fields import (
    MAX_NAME_CHARS,
    MAX_STATUS_BYTES,
    IgnoredReason,
    InvalidStatusError,
)
from processor.status.plan import PLAN_KEY, PlanBoard
from processor.status.signing import StatusSigner, verify

__all__ = [
    "MAX_CLOCK_AHEAD_MS",
    "MAX_STATUS_BYTES",
    "IgnoredReason",
    "InstancePhase",
    "InstanceStatus",
    "InvalidStatusError",
    "StatusBoard",
    "read_status",
]

log = logging.getLogger("processor.status")

# Hosts' clocks agree within seconds under NTP; five minutes leaves room for a badly set one
# without letting a status pass for fresh for long.
MAX_CLOCK_AHEAD_MS = 5 * 60 * 1000
# Ignored records are logged once per instance id, for this many ids; then only counted.
_MAX_WARNED = 1_000


class InstancePhase(Enum):
    WARMING_UP = "warming_up"  # restoring its future tasks before joining the group
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True)
class InstanceStatus:
    instance_id: str
    phase: InstancePhase
    host: str = ""
    pid: int = 0
    endpoint: str | None = None
    members: tuple[str, ...] = ()
    active_tasks: tuple[str, ...] = ()
    standby_tasks: tuple[str, ...] = ()
    restoring_tasks: tuple[str, ...] = ()
    # Changelog records behind the end, per task held here (active tasks: 0 once running).
    lags: dict[str, int] = field(default_factory=dict)
    # Joining instances this one is pre-warming tasks for.
    warming_for: tuple[str, ...] = ()
    updated_ms: int = 0
    # Tasks the group's assignment gives this instance that it takes once no other instance
    # claims them (`processor.runtime.handover`).
    claimed_tasks: tuple[str, ...] = ()

    def claims(self) -> frozenset[str]:
        """Every task this instance runs or is about to run."""
        return frozenset(self.active_tasks) | frozenset(self.claimed_tasks)

    # Records/s of each active task over the last half minute (processor.runtime.task_rates):
    # what the leader weighs tasks by (processor.runtime.load_balancer).
    task_rates: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> InstanceStatus:
        """The status `raw` holds; raises `InvalidStatusError` saying what is wrong. Fields this
        version does not know are ignored (a newer version may add some); a missing field takes
        its default, except `instance_id`."""
        fields.check_size(raw)
        try:
            data = json.loads(raw.decode())
        except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
            raise InvalidStatusError(IgnoredReason.NOT_JSON, f"not JSON: {e}"[:200]) from None
        if not isinstance(data, dict):
            raise fields.invalid(f"a status is an object, not {fields.kind(data)}")
        return cls(
            instance_id=fields.instance_name(data.get("instance_id"), "instance_id"),
            phase=_phase(data.get("phase", InstancePhase.RUNNING.value)),
            host=fields.text(data.get("host", ""), "host", 255),
            pid=fields.integer(data.get("pid", 0), "pid"),
            endpoint=fields.endpoint(data.get("endpoint")),
            members=fields.names(data.get("members", []), "members"),
            active_tasks=fields.task_ids(data.get("active_tasks", []), "active_tasks"),
            standby_tasks=fields.task_ids(data.get("standby_tasks", []), "standby_tasks"),
            restoring_tasks=fields.task_ids(data.get("restoring_tasks", []), "restoring_tasks"),
            lags=fields.lags(data.get("lags", {})),
            warming_for=fields.names(data.get("warming_for", []), "warming_for"),
            updated_ms=fields.integer(data.get("updated_ms", 0), "updated_ms"),
            claimed_tasks=fields.task_ids(data.get("claimed_tasks", []), "claimed_tasks"),
            task_rates=fields.task_rates(data.get("task_rates", {})),
        )

    def lag_of(self, task: TaskId) -> int | None:
        return self.lags.get(str(task))


def _phase(value: object) -> InstancePhase:
    phase = fields.text(value, "phase", 20)
    try:
        return InstancePhase(phase)
    except ValueError:
        known = ", ".join(p.value for p in InstancePhase)
        raise fields.invalid(f"phase {phase!r} is not one of {known}") from None


def read_status(
    key: bytes,
    value: bytes,
    headers: Sequence[tuple[str, bytes | None]],
    *,
    signer: StatusSigner | None,
    now_ms: int,
) -> InstanceStatus:
    """The status one record of the metadata topic carries, authenticated (with a `signer`)
    and validated; raises `InvalidStatusError`. Its size and signature are checked before its
    value is parsed; `now_ms` is the reader's wall clock."""
    fields.check_size(value)
    verify(key, value, headers, signer)
    status = InstanceStatus.from_json(value)
    if status.instance_id.encode() != key:
        raise InvalidStatusError(
            IgnoredReason.KEY_MISMATCH,
            f"it is the status of {status.instance_id[:100]!r}, under another key",
        )
    if status.updated_ms > now_ms + MAX_CLOCK_AHEAD_MS:
        raise InvalidStatusError(
            IgnoredReason.CLOCK_AHEAD,
            f"updated_ms {status.updated_ms} is {status.updated_ms - now_ms} ms ahead of this "
            f"clock (at most {MAX_CLOCK_AHEAD_MS} allowed)",
        )
    return status


class StatusBoard:
    """The latest valid status of every instance, from the records of the metadata topic, and
    the load plan (`plans`, `processor.status.plan`: the records under its key go there).

    `signer`: accept only statuses it signed (given when an HTTP token is set). `clock`:
    monotonic seconds, to note when each status was received (tests pass their own).
    `log_level`: of the line an ignored record is logged with (a client that sums them up in
    its own error passes DEBUG)."""

    def __init__(
        self,
        *,
        signer: StatusSigner | None = None,
        clock: Callable[[], float] = time.monotonic,
        log_level: int = logging.WARNING,
    ) -> None:
        self.statuses: dict[str, InstanceStatus] = {}
        self.ignored: Counter[IgnoredReason] = Counter()
        self._signer = signer
        self._clock = clock
        self._received: dict[str, float] = {}
        self._warned: set[str | None] = set()
        self._log_level = log_level
        self.plans = PlanBoard(signer=signer, ignored=self.ignored, log_level=log_level)

    def apply(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] = (),
        *,
        origin: str = "the metadata topic",
    ) -> None:
        """Take one record (`origin`: where it was read, for the log): a status replaces the
        instance's previous one, a tombstone removes it. A record that does not validate is
        ignored, and the previous status stays. Never raises."""
        if key == PLAN_KEY:
            self.plans.apply(value, headers, origin=origin)
            return
        try:
            if key is None:
                raise fields.invalid("it has no key (a status is keyed by its instance id)")
            if len(key) > 4 * MAX_NAME_CHARS:  # UTF-8 takes at most 4 bytes a character
                raise InvalidStatusError(IgnoredReason.TOO_LARGE, f"a key of {len(key)} bytes")
            instance = key.decode(errors="replace")
            if value is None:
                verify(key, value, headers, self._signer)
                self.statuses.pop(instance, None)
                self._received.pop(instance, None)
                return
            now_ms = int(time.time() * 1000)
            status = read_status(key, value, headers, signer=self._signer, now_ms=now_ms)
        except InvalidStatusError as e:
            self._ignore(key, e, origin)
            return
        self.statuses[instance] = status
        self._received[instance] = self._clock()

    def _ignore(self, key: bytes | None, error: InvalidStatusError, origin: str) -> None:
        self.ignored[error.reason] += 1
        instance = None if key is None else key[:200].decode(errors="replace")
        if instance in self._warned or len(self._warned) >= _MAX_WARNED:
            return
        self._warned.add(instance)
        log.log(
            self._log_level,
            "ignored the status %r on %s (%s): %s; more from it are only counted "
            "(processor_metadata_records_ignored_total)%s",
            instance,
            origin,
            error.reason.value,
            error.problem,
            f", nor any from more than {_MAX_WARNED} instance ids"
            if len(self._warned) == _MAX_WARNED
            else "",
        )

    def joiners(self, members: set[str], now_ms: int, max_age_ms: int) -> list[str]:
        """Instances announcing they are warming up to join, not yet members: their status was
        received here within `max_age_ms` (monotonic clock) and is not dated older than that
        (`now_ms`, the wall clock), so that an announcement read again from the topic's
        beginning after a restart is not taken for a new one."""
        received_after = self._clock() - max_age_ms / 1000
        return sorted(
            s.instance_id
            for s in self.statuses.values()
            if s.phase is InstancePhase.WARMING_UP
            and s.instance_id not in members
            and self._received.get(s.instance_id, -math.inf) >= received_after
            and now_ms - s.updated_ms <= max_age_ms
        )
