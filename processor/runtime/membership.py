"""Deciding whether a group snapshot is the generation this worker just joined.

Under the eager protocol a Stable group whose members include this worker's member id is
exactly the generation the worker was handed; every member sees the same member list and so
computes the same assignment.
"""

from __future__ import annotations

from collections import defaultdict

from processor.errors import DuplicateInstanceError
from processor.kafka.admin import GroupSnapshot


def stable_instances(snapshot: GroupSnapshot, own_member_id: str | None) -> list[str] | None:
    """The sorted instance ids of the generation, or None while the snapshot is not yet it.

    Raises DuplicateInstanceError when two live members carry the same instance id."""
    if not snapshot.stable or own_member_id is None:
        return None
    if own_member_id not in {m.member_id for m in snapshot.members}:
        return None
    members_by_instance: dict[str, list[str]] = defaultdict(list)
    for member in snapshot.members:
        members_by_instance[member.client_id].append(member.member_id)
    for instance, member_ids in sorted(members_by_instance.items()):
        if len(member_ids) > 1:
            raise DuplicateInstanceError(instance, sorted(member_ids))
    return sorted(members_by_instance)
