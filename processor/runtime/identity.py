"""Who a group member is, told by the group itself: the member's client id.

Every worker computes the assignment itself from the group's members, so every member must be
a worker of this application, and every worker must compute from the same inputs. Both travel in
the group consumer's `client.id`, which the group coordinator shows every member (the metadata
topic, which anyone may write, is not trusted for this):

```
processor~<protocol>~<topology>.<partitions>.<settings>~<instance id>
```

- `protocol` is `ASSIGNMENT_PROTOCOL`, raised whenever the assignment function or how workers
  hand tasks over changes (1: every task stopped at every rebalance; 2: tasks that keep their
  owner go on, moved ones are handed over through claims, `processor.runtime.handover`);
- the fingerprint has three parts, so that a worker can say *what* differs: the topology's shape
  as tasks see it (sub-topologies, their source topics, stores and repartition topics), the task
  count per sub-topology (from the source topics' partition counts), and the settings the
  assignment reads (`num_standby_replicas`, `assignment_balance_factor`, and with
  `assignment_load_aware` on, the load plan format: `processor.status.plan.PLAN_FORMAT`, which
  names the weighted rule);
- a member whose client id does not parse (a console consumer, a tool, a worker of a version
  before this scheme) is a *stranger*: it owns nothing.

Which number to raise: `ASSIGNMENT_PROTOCOL` when the count-based rule or the hand-over changes
(every group is affected); `PLAN_FORMAT` when only what weighted assignment does with a plan
changes, since only load-aware groups assign with weights and only their fingerprint names the
format. A rolling upgrade across either goes the same way: workers that differ never take part
together (`processor.runtime.membership`), the side with more instance ids runs every task and
the other waits, owning nothing, until enough workers are restarted to give the new version the
majority; then the new side takes every task and the old one waits. No task ever has two
owners, but while versions are mixed only one side works. Across a plan format, the new side
also ignores the old side's last plan (the format check in `LoadPlan.from_json`), so it starts
count-based and its leader plans anew once it has watched every task for a window.

Pure: no client imports; `processor.runtime.membership` applies it to a group snapshot.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from processor.status.plan import PLAN_FORMAT
from processor.topology.graph import StoreSpec
from processor.topology.subtopology import SubTopology

__all__ = [
    "ASSIGNMENT_PROTOCOL",
    "Fingerprint",
    "WorkerIdentity",
    "fingerprint_of",
    "parse_client_id",
]

ASSIGNMENT_PROTOCOL = 2
_PREFIX = "processor"
_SEPARATOR = "~"
_PART_LENGTH = 8  # hex digits per part: 32 bits, plenty to tell versions of one application apart


@dataclass(frozen=True, order=True)
class Fingerprint:
    """What the assignment depends on, hashed per part."""

    topology: str
    partitions: str
    settings: str

    def __str__(self) -> str:
        return f"{self.topology}.{self.partitions}.{self.settings}"

    @classmethod
    def parse(cls, text: str) -> Fingerprint | None:
        parts = text.split(".")
        if len(parts) != 3 or not all(_is_hex(p) for p in parts):
            return None
        return cls(*parts)

    def differences(self, other: Fingerprint) -> list[str]:
        """What `other` has different from this, in words a user acts on."""
        found = []
        if self.topology != other.topology:
            found.append("topology (sub-topologies, source topics or stores)")
        if self.partitions != other.partitions:
            found.append("partition counts of the source topics")
        if self.settings != other.settings:
            found.append(
                "assignment settings (num_standby_replicas, assignment_balance_factor, "
                "assignment_load_aware, or with it on the load plan format of another version)"
            )
        return found


@dataclass(frozen=True)
class WorkerIdentity:
    instance_id: str
    fingerprint: Fingerprint
    protocol: int = ASSIGNMENT_PROTOCOL

    def client_id(self) -> str:
        return _SEPARATOR.join(
            (_PREFIX, str(self.protocol), str(self.fingerprint), self.instance_id)
        )

    @property
    def agreement(self) -> tuple[int, Fingerprint]:
        """Members agree when this is equal."""
        return (self.protocol, self.fingerprint)


def parse_client_id(client_id: str) -> WorkerIdentity | None:
    """The worker a group member's client id names, or None for any other client."""
    parts = client_id.split(_SEPARATOR, 3)
    if len(parts) != 4 or parts[0] != _PREFIX or not parts[1].isdigit() or not parts[3]:
        return None
    fingerprint = Fingerprint.parse(parts[2])
    if fingerprint is None:
        return None
    return WorkerIdentity(parts[3], fingerprint, int(parts[1]))


def fingerprint_of(
    subtopologies: Iterable[SubTopology],
    task_counts: Mapping[int, int],
    *,
    num_standby_replicas: int,
    balance_factor: float,
    idle_advance_ms: int = 0,
    load_aware: bool = False,
) -> Fingerprint:
    subs = sorted(subtopologies, key=lambda s: s.id)
    shape = [_sub_shape(s) for s in subs]
    counts = sorted((int(sub), int(n)) for sub, n in task_counts.items())
    settings: dict[str, float] = {
        "num_standby_replicas": num_standby_replicas,
        "balance_factor": balance_factor,
    }
    if idle_advance_ms:
        # Named only when set, so that workers from before the setting existed agree with
        # workers that leave it off (a rolling upgrade needs no restart of the whole group).
        settings["idle_advance_ms"] = idle_advance_ms
    if load_aware:  # named only when on, likewise
        settings["load_plan_format"] = PLAN_FORMAT
    return Fingerprint(_digest(shape), _digest(counts), _digest(settings))


def _sub_shape(sub: SubTopology) -> dict[str, object]:
    shape: dict[str, object] = {
        "id": sub.id,
        "sources": sorted(sub.source_topics),
        "stores": sorted(_store_shape(spec) for spec in sub.stores),
        "repartition": sorted(sub.repartition_sink_topics),
    }
    if sub.source is not None:
        # Named only for a source outside Kafka, so that topologies without one keep their
        # fingerprint.
        shape["external_source"] = [sub.source.name, sub.source.topic]
    return shape


def _store_shape(spec: StoreSpec) -> str:
    """A store as the fingerprint sees it: its name, and its TTL when it has one (a TTL changes
    what the changelog holds: every worker must agree on it). Stores without a TTL are named
    alone, as before TTLs existed, so a rolling upgrade keeps agreeing."""
    if spec.ttl_ms > 0:
        return f"{spec.name}(ttl_ms={spec.ttl_ms},{spec.ttl_clock})"
    return spec.name


def _digest(value: object) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:_PART_LENGTH]


def _is_hex(text: str) -> bool:
    return len(text) == _PART_LENGTH and all(c in "0123456789abcdef" for c in text)
