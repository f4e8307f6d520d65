"""What each instance tells the application about itself on `<application_id>-metadata`.

One record per instance (key: its instance id), the latest winning (the topic is compacted).
Workers read every instance's status: a joining worker announces itself there before it joins
the group, so that the others pre-warm the tasks they will gain, and they report back how far
behind those warm copies are (`lags`), which the joiner waits on.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import Enum

from processor.runtime.task_id import TaskId

__all__ = ["InstancePhase", "InstanceStatus", "StatusBoard"]


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

    def to_json(self) -> bytes:
        data = asdict(self)
        data["phase"] = self.phase.value
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> InstanceStatus:
        data = json.loads(raw)
        return cls(
            instance_id=str(data["instance_id"]),
            phase=InstancePhase(data.get("phase", "running")),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            endpoint=data.get("endpoint"),
            members=tuple(data.get("members", ())),
            active_tasks=tuple(data.get("active_tasks", ())),
            standby_tasks=tuple(data.get("standby_tasks", ())),
            restoring_tasks=tuple(data.get("restoring_tasks", ())),
            lags={str(k): int(v) for k, v in data.get("lags", {}).items()},
            warming_for=tuple(data.get("warming_for", ())),
            updated_ms=int(data.get("updated_ms", 0)),
        )

    def lag_of(self, task: TaskId) -> int | None:
        return self.lags.get(str(task))


class StatusBoard:
    """The latest status of every instance, from the records of the metadata topic."""

    def __init__(self) -> None:
        self.statuses: dict[str, InstanceStatus] = {}
        self.malformed = 0

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            return
        instance = key.decode(errors="replace")
        if value is None:
            self.statuses.pop(instance, None)
            return
        try:
            self.statuses[instance] = InstanceStatus.from_json(value)
        except (ValueError, KeyError, TypeError):
            # Written by another version, or by hand: not worth stopping a worker for.
            self.malformed += 1

    def joiners(self, members: set[str], now_ms: int, max_age_ms: int) -> list[str]:
        """Instances announcing they are warming up to join, not yet members, heard from
        within `max_age_ms`."""
        return sorted(
            s.instance_id
            for s in self.statuses.values()
            if s.phase is InstancePhase.WARMING_UP
            and s.instance_id not in members
            and now_ms - s.updated_ms <= max_age_ms
        )
