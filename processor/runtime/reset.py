"""`processor reset`, the I/O around the pure plan (`processor.runtime.reset_plan`):

1. `refuse_if_running`: nothing may change while a worker of the application runs; it would
   commit its old offsets and recreate the topics a moment later. A worker runs when it is a
   member of the application's group, or announced on the metadata topic that it is warming up
   to join (recently), or holds the lock of a state directory to be wiped.
2. `read_plan`: the topics' partition counts, the group's committed offsets, the offsets to
   move to; then the plan.
3. `execute`: the group deleted (its offsets on internal topics with it) and the source offsets
   committed, the internal topics deleted (waiting until the broker no longer lists them, so
   that the next run creates them anew), the state directories wiped, the sinks' progress
   cleared. Each step reports one line per change.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from processor.config import WorkerConfig
from processor.dsl.topology import Topology
from processor.errors import ConfigError, ProcessorError, TopicError
from processor.kafka.admin import Admin
from processor.kafka.topic_tail import TopicTail
from processor.query.discovery import read_statuses
from processor.runtime.clients import admin_settings
from processor.runtime.identity import parse_client_id
from processor.runtime.instance import StateDirLock
from processor.runtime.reset_plan import (
    ResetPlan,
    build_plan,
    internal_topics,
    metadata_topic,
    source_topics,
)
from processor.runtime.supervisor import WORKER_DIR_PREFIX
from processor.sinks.base import SinkProgress
from processor.status.record import InstancePhase, StatusBoard

__all__ = ["ResetRequest", "WorkersRunningError", "execute", "read_plan", "refuse_if_running"]

# A warming-up worker republishes its status every half second; one silent this long has gone
# (the same bound the workers use, `status_publisher._JOINER_MAX_SILENCE_MS`).
JOINER_MAX_SILENCE_MS = 30_000
# Reading the metadata topic: until it is quiet this long, or at most METADATA_READ_S.
_METADATA_READ_S = 10.0
# How long the broker may take to stop listing a deleted topic.
_DELETED_VISIBLE_S = 30.0
# Entries of an application's state directory that a reset keeps: the worker's identity (so that
# it gets its tasks back) and the lock file.
_KEPT_STATE_ENTRIES = frozenset({"instance-id", ".lock"})


class WorkersRunningError(ProcessorError):
    """A worker of the application is running: a reset would be undone by it."""


@dataclass(frozen=True)
class ResetRequest:
    topology: Topology
    config: WorkerConfig
    to_time_ms: int | None
    state_dirs: tuple[Path, ...]
    dead_letters: bool

    @property
    def application_id(self) -> str:
        return self.config.application_id

    def app_state_dirs(self) -> list[Path]:
        """The application's directory in each state directory given, and in the directories
        `processor run --workers N` gives its workers there (`worker-<i>`), where they exist."""
        found = []
        for given in self.state_dirs:
            children = sorted(given.glob(f"{WORKER_DIR_PREFIX}*")) if given.is_dir() else []
            for directory in [given, *children]:
                if (directory / self.application_id).is_dir():
                    found.append(directory / self.application_id)
        return found


def make_admin(request: ResetRequest) -> Admin:
    return Admin(admin_settings(request.config))


# --- 1. refusing


def refuse_if_running(admin: Admin, request: ResetRequest) -> None:
    """Raises WorkersRunningError naming every worker found running."""
    app = request.application_id
    members: dict[str, str] = {}  # instance id (a stranger: its client id) -> host
    for member in admin.describe_group(app).members:
        identity = parse_client_id(member.client_id)
        name = identity.instance_id if identity is not None else member.client_id
        members[name] = member.host or "unknown host"
    running = [f"{name} (member of group {app!r} from {host})" for name, host in members.items()]
    running += [
        f"{instance} (warming up to join, on {metadata_topic(app)})"
        for instance in _warming_up(admin, request)
        if instance not in members
    ]
    for directory in request.app_state_dirs():
        try:
            StateDirLock(directory).release()
        except ConfigError:
            holder = (directory / ".lock").read_text().strip() or "unknown"
            running.append(f"the worker using {directory} (pid {holder})")
    if running:
        raise WorkersRunningError(
            f"application {app!r} has running workers: {'; '.join(running)}; stop every worker "
            "of the application (SIGTERM) and run the reset again; nothing was changed"
        )


def _warming_up(admin: Admin, request: ResetRequest) -> list[str]:
    """Instances whose recent status on the metadata topic says they are warming up to join."""
    topic = metadata_topic(request.application_id)
    partitions = admin.partition_counts([topic])[topic]
    if partitions is None:
        return []
    settings = admin_settings(request.config)
    tail = TopicTail(
        {**settings, "group.id": f"{request.application_id}-reset", "client.id": "reset"},
        topic,
        partitions,
    )
    board = StatusBoard()
    try:
        read_statuses(tail, board, _METADATA_READ_S, every_status=True)
    finally:
        tail.close()
    return warming_up(board, int(time.time() * 1000))


def warming_up(board: StatusBoard, now_ms: int) -> list[str]:
    """The instances whose latest status says they are warming up to join, dated within
    `JOINER_MAX_SILENCE_MS` of `now_ms` (a worker killed while warming up stops counting)."""
    return sorted(
        s.instance_id
        for s in board.statuses.values()
        if s.phase is InstancePhase.WARMING_UP and now_ms - s.updated_ms <= JOINER_MAX_SILENCE_MS
    )


# --- 2. planning


def read_plan(admin: Admin, request: ResetRequest) -> ResetPlan:
    app = request.application_id
    subtopologies = request.topology.subtopologies(app)
    streams = source_topics(subtopologies)
    globals_only = sorted({t.topic for t in request.topology.global_tables()} - set(streams))
    internal = internal_topics(
        subtopologies,
        app,
        dead_letter_topic=request.config.dead_letters if request.dead_letters else None,
    )
    counts = admin.partition_counts([*streams, *globals_only, *internal])
    missing = [t for t in streams if counts[t] is None]
    if missing:
        raise TopicError(
            missing[0],
            f"source topic does not exist (missing: {', '.join(missing)}): is this the "
            "application's topology, on its cluster? nothing was changed",
        )
    committed = admin.committed_offsets(app)
    partitions = [
        (topic, p)
        for topic in [*streams, *globals_only]
        for p in range(counts[topic] or 0)
        if topic in streams or (topic, p) in committed
    ]
    return build_plan(
        app,
        to_time_ms=request.to_time_ms,
        partition_counts=counts,
        sources=[*streams, *globals_only],
        optional_sources=globals_only,
        internal=internal,
        committed=committed,
        targets=admin.offsets_at(partitions, request.to_time_ms),
        state_dirs=request.app_state_dirs(),
        sinks=_sink_progress(request),
    )


def _sink_progress(request: ResetRequest) -> list[SinkProgress]:
    found = []
    for sub in request.topology.subtopologies(request.application_id):
        node = sub.external_sink
        if node is None or node.external is None:
            continue
        for topic in sub.source_topics:
            progress = node.external.progress(request.application_id, topic)
            if progress is not None:
                found.append(progress)
    return found


# --- 3. doing


def execute(admin: Admin, plan: ResetPlan, report: Callable[[str], None]) -> None:
    app = plan.application_id
    if admin.delete_group(app):
        report(f"deleted consumer group {app!r} with its committed offsets")
    targets = {(m.topic, m.partition): m.target for m in plan.offsets}
    admin.commit_group_offsets(app, targets)
    for move in plan.offsets:
        report(f"committed offset of group {app!r}: {move.describe()}")
    admin.delete_topics(plan.topics)
    _wait_until_gone(admin, plan.topics)
    for topic in plan.topics:
        report(f"deleted topic {topic}")
    for directory in plan.state_dirs:
        wipe_state_dir(directory)
        report(f"wiped state directory {directory}")
    for sink in plan.sinks:
        report(sink.clear())


def _wait_until_gone(admin: Admin, topics: Sequence[str]) -> None:
    deadline = time.monotonic() + _DELETED_VISIBLE_S
    remaining = list(topics)
    while remaining:
        counts = admin.partition_counts(remaining)
        remaining = [t for t in remaining if counts[t] is not None]
        if not remaining:
            return
        if time.monotonic() > deadline:
            raise ProcessorError(
                f"the broker still lists deleted topics {', '.join(remaining)} after "
                f"{_DELETED_VISIBLE_S:g}s; wait and run the reset again before starting workers"
            )
        time.sleep(0.2)


def wipe_state_dir(app_state_dir: Path) -> None:
    """Delete the application's local state (its tasks' and global tables' stores), keeping the
    worker's instance id; holds the directory's lock meanwhile, so no worker starts on it."""
    lock = StateDirLock(app_state_dir)
    try:
        for entry in sorted(app_state_dir.iterdir()):
            if entry.name in _KEPT_STATE_ENTRIES:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    finally:
        lock.release()
