"""Deciding whether a group snapshot is the generation this worker just joined.

Under the eager protocol a Stable group whose members include this worker's member id is
exactly the generation the worker was handed; every member sees the same member list and so
computes the same assignment.

One instance id can appear under two members: a worker killed and restarted quickly joins
before the group has expired its dead predecessor (that takes `session.timeout.ms`). So a
duplicate is not an error at once. Every worker counts the instance once; the workers carrying
it take no tasks until the old member expires. Only a duplicate that outlives the session
timeout means two live workers share an id (`DuplicateWatch`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from processor.errors import DuplicateInstanceError
from processor.kafka.admin import GroupSnapshot


@dataclass(frozen=True)
class Membership:
    """The generation: its instance ids (sorted, each once) and the member ids of every
    instance id that more than one member carries."""

    instances: list[str]
    duplicated: dict[str, list[str]]


def stable_membership(snapshot: GroupSnapshot, own_member_id: str | None) -> Membership | None:
    """The generation's membership, or None while the snapshot is not yet that generation."""
    if not snapshot.stable or own_member_id is None:
        return None
    if own_member_id not in {m.member_id for m in snapshot.members}:
        return None
    members_by_instance: dict[str, list[str]] = defaultdict(list)
    for member in snapshot.members:
        members_by_instance[member.client_id].append(member.member_id)
    duplicated = {
        instance: sorted(member_ids)
        for instance, member_ids in members_by_instance.items()
        if len(member_ids) > 1
    }
    return Membership(sorted(members_by_instance), duplicated)


class DuplicateWatch:
    """Reports this worker's instance id as duplicated once the duplicate has lasted longer
    than `grace_s` (the session timeout plus a margin) across snapshots."""

    def __init__(self, instance_id: str, grace_s: float) -> None:
        self.instance_id = instance_id
        self.grace_s = grace_s
        self._since: float | None = None
        self._member_ids: list[str] = []

    def observe(self, membership: Membership, now: float) -> bool:
        """Note a snapshot; True when this instance is duplicated in it (take no tasks)."""
        member_ids = membership.duplicated.get(self.instance_id)
        if member_ids is None:
            self._since = None
            return False
        if self._since is None:
            self._since = now
        self._member_ids = member_ids
        return True

    def check(self, now: float) -> None:
        """Raise DuplicateInstanceError when the duplicate outlived the grace period."""
        if self._since is not None and now - self._since > self.grace_s:
            raise DuplicateInstanceError(self.instance_id, self._member_ids)
