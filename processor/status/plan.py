"""The load plan: task weights the leader publishes on `<application_id>-metadata` for every
worker to assign with (`processor.runtime.load_balancer`).

One record under the key `PLAN_KEY`, next to the instances' statuses. The key starts with a NUL
byte: an instance id is printable text (`processor.status.fields.instance_name`), so no status
can have this key and no instance id can overwrite the plan. The value, JSON:

```
{"format": 2, "version": 7, "leader": "w0", "members": ["w0", "w1", "w2"],
 "weights": {"0_3": 16, "0_7": 5}, "made_ms": 1764770000000}
```

- `format`: `PLAN_FORMAT`, raised whenever what a plan means or how it is checked changes,
  the weighted rule workers assign by included (workers that take part together have the same,
  see `processor.runtime.identity`). 1: heaviest task first, each to its first member within
  the bound; 2: the count-based result, settled (`processor.runtime.assignment_weighted`);
- `version`: one more than the highest the leader has seen, for logs and for telling plans apart;
- `leader`: who made it, the smallest of `members` (checked);
- `members`: the instances it was made for, sorted, each once;
- `weights`: task id -> weight `1..MAX_WEIGHT`; a task not named weighs 1;
- `made_ms`: the leader's wall clock, for people only.

Every worker must use the same plan, so whether a record is taken depends on the record alone
(and the HTTP token every worker shares), never on the reader's clock or on what it read
before: **the last record under `PLAN_KEY` is the plan**. A valid one replaces the plan; one that
does not validate (or a tombstone) leaves no plan, i.e. count-based assignment, and is counted in
`processor_metadata_records_ignored_total` and logged. A worker that starts later, reading the
topic after compaction kept only that last record, therefore decides exactly as one that read
every record did. Like statuses, a plan is signed when an HTTP token is set
(`processor.status.signing`) and then an unsigned or wrongly signed one is not taken; a signed
plan can be replayed, which at worst brings back weights a leader once chose.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from processor.ids import TaskId
from processor.status import fields
from processor.status.fields import IgnoredReason, InvalidStatusError
from processor.status.signing import StatusSigner, verify

__all__ = ["MAX_WEIGHT", "PLAN_FORMAT", "PLAN_KEY", "LoadPlan", "PlanBoard", "read_plan"]

log = logging.getLogger("processor.status")

PLAN_KEY = b"\x00load-plan"
PLAN_FORMAT = 2
"""2 since the weighted rule became the settled count-based result: a format-1 worker would
place the same weights elsewhere, so the two must never assign together (see
`processor.runtime.identity` for how a rolling upgrade goes)."""
MAX_WEIGHT = 16  # see processor.runtime.load_plan for the scale
# Ignored plans logged; then only counted (whoever can write the topic can write many).
_MAX_WARNED = 10


@dataclass(frozen=True)
class LoadPlan:
    version: int
    leader: str
    members: tuple[str, ...]
    weights: Mapping[TaskId, int] = field(default_factory=dict)
    made_ms: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(sorted(set(self.members))))
        kept = {t: w for t, w in sorted(self.weights.items()) if w != 1}
        object.__setattr__(self, "weights", MappingProxyType(kept))

    def to_json(self) -> bytes:
        data = {
            "format": PLAN_FORMAT,
            "version": self.version,
            "leader": self.leader,
            "members": list(self.members),
            "weights": {str(t): w for t, w in self.weights.items()},
            "made_ms": self.made_ms,
        }
        return json.dumps(data, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LoadPlan:
        """The plan `raw` holds; raises `InvalidStatusError` saying what is wrong. Fields this
        version does not know are ignored."""
        fields.check_size(raw)
        try:
            data = json.loads(raw.decode())
        except (ValueError, RecursionError) as e:
            raise InvalidStatusError(IgnoredReason.NOT_JSON, f"not JSON: {e}"[:200]) from None
        if not isinstance(data, dict):
            raise fields.invalid(f"a load plan is an object, not {fields.kind(data)}")
        plan_format = fields.integer(data.get("format"), "format")
        if plan_format != PLAN_FORMAT:
            raise fields.invalid(
                f"load plan format {plan_format} is not {PLAN_FORMAT}, the one this version reads"
            )
        version = fields.integer(data.get("version"), "version")
        leader = fields.instance_name(data.get("leader"), "leader")
        members = fields.names(data.get("members"), "members")
        if not members or len(set(members)) != len(members):
            raise fields.invalid("members must name each instance once, and at least one")
        if leader != min(members):
            raise fields.invalid(
                f"it was made by {leader[:100]!r}, not by its members' leader "
                f"{min(members)[:100]!r} (the smallest instance id)"
            )
        return cls(
            version=version,
            leader=leader,
            members=members,
            weights=_weights(data.get("weights")),
            made_ms=fields.integer(data.get("made_ms", 0), "made_ms"),
        )

    def made_for(self, members: Sequence[str]) -> bool:
        """Whether this plan was made for exactly `members` (in any order)."""
        return tuple(sorted(set(members))) == self.members


def _weights(value: object) -> dict[TaskId, int]:
    weights = {}
    for task, weight in fields.task_integers(value, "weights", "weights").items():
        if not 1 <= weight <= MAX_WEIGHT:
            raise fields.invalid(f"weights[{task!r}] {weight} is not 1 to {MAX_WEIGHT}")
        weights[TaskId.parse(task)] = weight
    return weights


def read_plan(
    value: bytes, headers: Sequence[tuple[str, bytes | None]], signer: StatusSigner | None
) -> LoadPlan:
    """The plan a record under `PLAN_KEY` carries, authenticated (with a `signer`) and
    validated; raises `InvalidStatusError`. Its size and signature are checked before its value
    is parsed."""
    fields.check_size(value)
    verify(PLAN_KEY, value, headers, signer)
    return LoadPlan.from_json(value)


class PlanBoard:
    """The plan of the last record under `PLAN_KEY` (`latest`, None when that record is not a
    valid plan), and the highest version of any valid plan read (`highest_version`). Ignored
    records are counted in `ignored` (shared with the `StatusBoard` it belongs to)."""

    def __init__(
        self,
        *,
        signer: StatusSigner | None = None,
        ignored: Counter[IgnoredReason] | None = None,
        log_level: int = logging.WARNING,
    ) -> None:
        self.latest: LoadPlan | None = None
        self.highest_version = 0
        self.ignored: Counter[IgnoredReason] = Counter() if ignored is None else ignored
        self._signer = signer
        self._log_level = log_level
        self._warned = 0

    def apply(
        self,
        value: bytes | None,
        headers: Sequence[tuple[str, bytes | None]] = (),
        *,
        origin: str = "the metadata topic",
    ) -> None:
        """Take the last record under `PLAN_KEY`: a valid plan, or none (a tombstone withdraws
        the plan; anything else is ignored, counted and logged). Never raises."""
        self.latest = None
        try:
            if value is None:
                verify(PLAN_KEY, value, headers, self._signer)
                return
            plan = read_plan(value, headers, self._signer)
        except InvalidStatusError as e:
            self._ignore(e, origin)
            return
        self.latest = plan
        self.highest_version = max(self.highest_version, plan.version)

    def _ignore(self, error: InvalidStatusError, origin: str) -> None:
        self.ignored[error.reason] += 1
        if self._warned >= _MAX_WARNED:
            return
        self._warned += 1
        log.log(
            self._log_level,
            "ignored the load plan on %s (%s): %s; tasks are balanced by count until the leader "
            "publishes a valid one (processor_metadata_records_ignored_total)%s",
            origin,
            error.reason.value,
            error.problem,
            "; further ones are only counted" if self._warned == _MAX_WARNED else "",
        )
