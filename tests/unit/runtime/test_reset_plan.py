"""The reset plan: which topics are the application's (exactly those its workers create, and no
topic of an application whose id extends its own), which offsets move where, and what a
plan prints."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import topologies
from processor import Topology
from processor.config import WorkerConfig
from processor.runtime.internal_topics import internal_topic_specs, plan_partitions
from processor.runtime.reset_plan import (
    OffsetMove,
    build_plan,
    fed_topics,
    internal_topics,
    source_topics,
)
from processor.serdes import StringSerde


async def _echo(value: str) -> str:
    return value


def _async_behind_a_topic() -> Topology:
    """An async operator whose source has another reader: the call goes behind a topic."""
    topology = Topology("async-hop")
    stream = topology.stream("in", key_serde=StringSerde(), value_serde=StringSerde())
    stream.map_values_async(_echo, name="echo").to("out")
    stream.to("copy")
    return topology


def _example_topologies() -> list[Topology]:
    modules = [f"topologies.{m.name}" for m in pkgutil.iter_modules(topologies.__path__)]
    tests = ["worker_topologies", "integration.sink_topology", "integration.fk_join_scenario"]
    found = {"async-hop": _async_behind_a_topic()}
    for name in [*modules, *(f"tests.{m}" for m in tests)]:
        for value in vars(importlib.import_module(name)).values():
            if isinstance(value, Topology):
                found.setdefault(value.name, value)
    return list(found.values())


EXAMPLES = _example_topologies()


def _created_by_workers(topology: Topology, application_id: str) -> set[str]:
    """The topics `prepare_topics` creates for the topology, read off its own functions."""
    subtopologies = topology.subtopologies(application_id)
    external = {t: 3 for sub in subtopologies for t in sub.external_source_topics}
    plan = plan_partitions(subtopologies, external)
    config = WorkerConfig(bootstrap_servers="127.0.0.1:9", application_id=application_id)
    specs = internal_topic_specs(config, subtopologies, plan, replication_factor=1)
    return {spec.name for spec in specs} | set(fed_topics(subtopologies))


@pytest.mark.parametrize("topology", EXAMPLES, ids=lambda t: t.name)
def test_the_topics_deleted_are_exactly_those_the_workers_create(topology: Topology) -> None:
    subtopologies = topology.subtopologies("app")
    assert set(internal_topics(subtopologies, "app", dead_letter_topic=None)) == (
        _created_by_workers(topology, "app")
    )
    with_dead_letters = internal_topics(subtopologies, "app", dead_letter_topic="app-dlq")
    assert "app-dlq" in with_dead_letters


def test_the_examples_cover_every_kind_of_internal_topic() -> None:
    """So that the test above sees changelogs of timers and join buffers, repartition, foreign
    key, async and sink topics, and sources outside Kafka."""
    names = {
        n
        for t in EXAMPLES
        for n in internal_topics(t.subtopologies("app"), "app", dead_letter_topic=None)
    }
    for suffix in ("-changelog", "-repartition", "-async", "-sink", "-source-positions"):
        assert any(n.endswith(suffix) for n in names), suffix
    for kind in ("-timers-", "-buffer-", "-subscription-registration-topic"):
        assert any(kind in n for n in names), kind


@pytest.mark.parametrize("topology", EXAMPLES, ids=lambda t: t.name)
def test_an_application_whose_id_extends_this_one_keeps_its_topics(topology: Topology) -> None:
    ours = set(internal_topics(topology.subtopologies("app"), "app", dead_letter_topic=None))
    theirs = set(
        internal_topics(topology.subtopologies("app-v2"), "app-v2", dead_letter_topic=None)
    )
    assert not (ours & theirs - set(fed_topics(topology.subtopologies("app"))))


def test_sources_are_the_topics_read_and_not_written_by_the_application() -> None:
    etl = next(t for t in EXAMPLES if t.name == "etl-orders")
    subtopologies = etl.subtopologies("app")
    fed = fed_topics(subtopologies)
    assert fed and not set(fed) & set(source_topics(subtopologies))
    assert not any(t.startswith("app-") for t in source_topics(subtopologies))


def _plan(**changes: object):  # type: ignore[no-untyped-def]
    facts: dict[str, object] = {
        "to_time_ms": None,
        "partition_counts": {"in": 2, "rates": 2, "app-counts-changelog": 2, "app-metadata": None},
        "sources": ["in", "rates"],
        "optional_sources": {"rates"},
        "internal": ["app-counts-changelog", "app-metadata"],
        "committed": {("in", 0): 40, ("rates", 1): 7, ("app-by-repartition", 0): 9},
        "targets": {("in", 0): 3, ("in", 1): 0, ("rates", 1): 2},
        "state_dirs": [Path("/state/app")],
        "sinks": [],
    }
    facts.update(changes)
    return build_plan("app", **facts)  # type: ignore[arg-type]


def test_a_plan_moves_every_source_partition_and_global_ones_only_where_committed() -> None:
    plan = _plan()
    assert plan.offsets == (
        OffsetMove("in", 0, 40, 3),
        OffsetMove("in", 1, None, 0),
        OffsetMove("rates", 1, 7, 2),
    )
    assert plan.dropped_offsets == (("app-by-repartition", 0),)
    assert plan.topics == ("app-counts-changelog",)  # the metadata topic does not exist


def test_a_plan_lists_every_step_in_order_and_sums_them_up() -> None:
    plan = _plan()
    assert plan.steps() == [
        "delete consumer group 'app' with its committed offsets (internal: app-by-repartition[0])",
        "commit offset of group 'app': in[0] 40 -> 3",
        "commit offset of group 'app': in[1] none -> 0",
        "commit offset of group 'app': rates[1] 7 -> 2",
        "delete topic app-counts-changelog",
        "wipe state directory /state/app",
    ]
    assert plan.summary(done=False) == (
        "would reset application 'app': 3 source partitions to the earliest offset, 1 internal "
        "topics deleted, 1 state directories wiped, 0 sinks' progress cleared"
    )


def test_a_plan_to_a_time_says_which() -> None:
    plan = _plan(to_time_ms=1_796_119_200_000, committed={})
    assert "to the first record at or after 2026-12-01T10:00:00Z" in plan.summary(done=True)
    assert not plan.group_exists
    assert plan.offsets[0] == OffsetMove("in", 0, None, 3)
