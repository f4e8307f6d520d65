"""Deciding whether a group snapshot is the generation this worker just joined.

Under the eager protocol a Stable group whose members include this worker's member id is
exactly the generation the worker was handed; every member sees the same member list and so
computes the same assignment.

One instance id can appear under two members: a worker killed and restarted quickly joins
before the group has expired its dead predecessor (that takes `session.timeout.ms`). So a
duplicate is not an error at once. Every worker counts the instance once; the workers carrying
it take no tasks until the old member expires. Only a duplicate that outlives the session
timeout means two live workers share an id (`DuplicateWatch`).

Only workers of this application with the same fingerprint take part (`membership_of`): a
consumer that is not a worker joining the group (a console consumer started for debugging) owns
nothing, and workers that would compute a different assignment (another topology version, other
settings, a stale partition count) never own a task another worker owns.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from processor.errors import DuplicateInstanceError
from processor.kafka.admin import GroupMember, GroupSnapshot
from processor.runtime.identity import Fingerprint, WorkerIdentity, parse_client_id

log = logging.getLogger("processor.worker")


@dataclass(frozen=True)
class Stranger:
    """A group member that is not a worker of this application (its client id says so)."""

    member_id: str
    client_id: str
    host: str


@dataclass(frozen=True)
class Membership:
    """The generation as this worker sees it.

    `instances`: the workers that take part in the assignment, sorted, each once: those whose
    protocol and fingerprint (`processor.runtime.identity`) are the majority's. `duplicated`:
    the member ids of every instance id that more than one worker member carries. `strangers`:
    members that are no worker. `outvoted`: workers whose fingerprint is not the majority's, by
    instance id; they own nothing. `majority`: the identity every taking part shares (the first
    such worker's), None when no worker is in the group."""

    instances: list[str]
    duplicated: dict[str, list[str]]
    strangers: tuple[Stranger, ...] = ()
    outvoted: dict[str, WorkerIdentity] = field(default_factory=dict)
    majority: WorkerIdentity | None = None

    def takes_part(self, identity: WorkerIdentity) -> bool:
        return self.majority is not None and identity.agreement == self.majority.agreement


def stable_membership(snapshot: GroupSnapshot, own_member_id: str | None) -> Membership | None:
    """The generation's membership, or None while the snapshot is not yet that generation."""
    if not snapshot.stable or own_member_id is None:
        return None
    if own_member_id not in {m.member_id for m in snapshot.members}:
        return None
    return membership_of(snapshot.members)


def membership_of(members: Iterable[GroupMember]) -> Membership:
    """Who takes part: the workers sharing the fingerprint most instance ids carry; on a tie, the
    fingerprint of the lowest instance id among the tied. Every member computes this from the
    same member list, so all agree on it, whichever side of a disagreement they are on."""
    strangers: list[Stranger] = []
    workers: list[tuple[GroupMember, WorkerIdentity]] = []
    for member in members:
        identity = parse_client_id(member.client_id)
        if identity is None:
            strangers.append(Stranger(member.member_id, member.client_id, member.host))
        else:
            workers.append((member, identity))
    by_agreement: dict[tuple[int, Fingerprint], set[str]] = defaultdict(set)
    for _, identity in workers:
        by_agreement[identity.agreement].add(identity.instance_id)
    if not by_agreement:
        return Membership([], {}, tuple(sorted(strangers, key=_stranger_order)))
    winner = min(by_agreement, key=lambda a: (-len(by_agreement[a]), min(by_agreement[a]), a))
    members_by_instance: dict[str, list[str]] = defaultdict(list)
    for member, identity in workers:
        members_by_instance[identity.instance_id].append(member.member_id)
    duplicated = {
        instance: sorted(member_ids)
        for instance, member_ids in members_by_instance.items()
        if len(member_ids) > 1
    }
    majority = min((i for _, i in workers if i.agreement == winner), key=lambda i: i.instance_id)
    outvoted = {
        identity.instance_id: identity
        for _, identity in sorted(workers, key=lambda w: (w[1].instance_id, w[1].agreement))
        if identity.agreement != winner and identity.instance_id not in by_agreement[winner]
    }
    return Membership(
        sorted(by_agreement[winner]),
        duplicated,
        tuple(sorted(strangers, key=_stranger_order)),
        outvoted,
        majority,
    )


def _stranger_order(stranger: Stranger) -> tuple[str, str]:
    return (stranger.client_id, stranger.member_id)


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


def report_strangers(
    instance_id: str, application_id: str, membership: Membership, seen: set[tuple[str, str]]
) -> None:
    """Warn once per (client id, host) of a group member that is no worker (`seen`: those
    warned of already, updated)."""
    for stranger in membership.strangers:
        key = (stranger.client_id, stranger.host)
        if key in seen:
            continue
        seen.add(key)
        log.warning(
            "worker %s: group member %r (client id %r, host %s) is not a worker of this "
            "application; it gets no tasks. A consumer that joins the group %r (a console "
            "consumer, a tool) only slows rebalances down: give it a group id of its own",
            instance_id,
            stranger.member_id,
            stranger.client_id,
            stranger.host or "unknown",
            application_id,
        )


def report_outvoted(
    identity: WorkerIdentity, majority: WorkerIdentity, membership: Membership
) -> None:
    """Say, once, that this worker (`identity`) computes the assignment from other inputs than
    the group's majority, and what to do."""
    log.error(
        "worker %s runs a different %s (fingerprint %s, protocol %d) than %s (fingerprint %s, "
        "protocol %d): it takes no tasks and waits until the group agrees. Start it with the "
        "same topology and settings as the others, or upgrade as the README's 'Rolling "
        "upgrades' says (a new application id, or stop every worker first)",
        identity.instance_id,
        " and ".join(majority.fingerprint.differences(identity.fingerprint))
        or "assignment protocol",
        identity.fingerprint,
        identity.protocol,
        ", ".join(membership.instances),
        majority.fingerprint,
        majority.protocol,
    )
