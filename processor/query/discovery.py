"""Finding the query endpoints of an application's workers (`QueryClient.for_application`) on
the compacted topic `<application_id>-metadata`, where every instance publishes its status and
endpoint. `find_endpoints` takes three steps:

1. the topic's partitions (`BrokerError` when the cluster cannot be reached, `QueryError` when
   the topic does not exist: no worker of the application has run there);
2. its statuses, read from the beginning for up to `wait` seconds; once an instance is running
   with an endpoint, only until the topic goes quiet, so that a later status of the same
   instance (stopped, moved) is seen too. With a token, only statuses signed with it count;
3. the endpoints of the running instances, the most recently updated first (`QueryError`,
   naming every instance seen, when there is none).

Imports confluent_kafka (`processor.kafka`): `processor.query.client` imports this module only
to find a worker, not to query one.
"""

from __future__ import annotations

import logging
import time
import uuid

from processor.config import metadata_topic
from processor.errors import BrokerError
from processor.kafka.admin import Admin
from processor.kafka.topic_tail import TopicTail
from processor.query.client import QueryError
from processor.status.record import IgnoredReason, InstancePhase, StatusBoard
from processor.status.signing import StatusSigner

__all__ = [
    "find_endpoints",
    "metadata_topic",
    "no_running_instance",
    "read_statuses",
    "running_endpoints",
]


def find_endpoints(
    bootstrap_servers: str, application_id: str, *, token: str | None, wait: float
) -> list[str]:
    """The endpoints of the running instances of `application_id`, most recently updated first
    (never empty), by the steps in the module docstring."""
    topic = metadata_topic(application_id)
    # librdkafka's own log lines would only repeat, on stderr, the error raised here.
    settings = {"bootstrap.servers": bootstrap_servers, "log_level": "0"}
    partitions = _partitions(settings, topic, application_id, wait)
    board = StatusBoard(
        signer=StatusSigner(token, application_id) if token else None,
        log_level=logging.DEBUG,  # the error below says what was ignored
    )
    tail = TopicTail(
        {
            **settings,
            "group.id": f"{application_id}-query-{uuid.uuid4().hex[:12]}",
            "client.id": f"{application_id}-query",
        },
        topic,
        partitions,
    )
    try:
        read_statuses(tail, board, wait)
    finally:
        tail.close()
    endpoints = running_endpoints(board)
    if not endpoints:
        raise no_running_instance(board, bootstrap_servers, application_id, wait)
    return endpoints


def running_endpoints(board: StatusBoard) -> list[str]:
    """The endpoints of the instances `board` says are running, most recently updated first (a
    killed worker's last status still says running: the caller tries them in turn)."""
    running = [
        s for s in board.statuses.values() if s.phase is InstancePhase.RUNNING and s.endpoint
    ]
    running.sort(key=lambda s: s.updated_ms, reverse=True)
    return [s.endpoint for s in running if s.endpoint]


def _partitions(settings: dict[str, str], topic: str, application_id: str, wait: float) -> int:
    bootstrap_servers = settings["bootstrap.servers"]
    try:
        partitions = Admin(settings, timeout=max(wait, 1.0)).partition_counts([topic])[topic]
    except BrokerError as e:
        raise BrokerError(
            f"cannot find a worker of application {application_id!r}: reading topic "
            f"{topic!r} from {bootstrap_servers} failed: {e}"
        ) from e
    if partitions is None:
        raise QueryError(
            f"topic {topic!r} does not exist on {bootstrap_servers}: no worker of "
            f"application {application_id!r} has run there (check the application id)",
            url=bootstrap_servers,
        )
    return partitions


def read_statuses(
    tail: TopicTail, board: StatusBoard, wait: float, *, every_status: bool = False
) -> None:
    """Apply what `tail` reads to `board` for up to `wait` seconds, or until the topic goes
    quiet once there is a running instance with an endpoint (`every_status`: until it goes
    quiet, whatever it holds)."""
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        # Once there is a candidate, read on until the topic goes quiet, so that a later
        # status of the same instance (stopped, moved) is seen too.
        candidate = not every_status and bool(running_endpoints(board))
        quiet = 0.2 if candidate else 0.5
        records = tail.poll(timeout=min(quiet, max(0.0, deadline - time.monotonic())))
        for record in records:
            board.apply(record.key, record.value, record.headers, origin=record.origin)
        if not records and (every_status or running_endpoints(board)):
            return


def no_running_instance(
    board: StatusBoard, bootstrap_servers: str, application_id: str, wait: float
) -> QueryError:
    known = ", ".join(
        f"{s.instance_id} ({s.phase.value}, endpoint {s.endpoint or 'none'})"
        for s in sorted(board.statuses.values(), key=lambda s: s.instance_id)
    )
    unsigned = board.ignored[IgnoredReason.UNSIGNED] + board.ignored[IgnoredReason.BAD_SIGNATURE]
    unbelieved = (
        f"; {unsigned} statuses not signed with the token given: check it" if unsigned else ""
    )
    return QueryError(
        f"no running instance of application {application_id!r} has published a query "
        f"endpoint on topic {metadata_topic(application_id)!r} (read for {wait:g}s; "
        f"instances: {known or 'none'}{unbelieved}); start a worker with an --http-port, or "
        "pass a worker's URL",
        url=bootstrap_servers,
    )
