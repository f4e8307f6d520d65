"""Cutting a topology into sub-topologies, describing it, and rejecting invalid declarations."""

from __future__ import annotations

import pytest

from processor import Topology, serdes
from processor.errors import TopologyError


def test_a_single_stream_is_one_subtopology_with_its_sinks() -> None:
    topology = Topology("single")
    topology.stream("in").filter(lambda k, v: True).to("out")
    [sub] = topology.subtopologies()
    assert sub.id == 0
    assert sub.source_topics == ("in",)
    assert sub.sink_topics == ("out",)


def test_independent_streams_are_separate_subtopologies_numbered_by_declaration_order() -> None:
    topology = Topology("independent")
    c = topology.stream("c-topic")
    a = topology.stream("a-topic")
    b = topology.stream("b-topic")
    # operators declared in another order than the sources must not change the numbering
    b.map_values(len).to("b-out")
    a.to("a-out")
    c.filter(lambda k, v: True).to("c-out")
    subs = topology.subtopologies()
    assert [s.id for s in subs] == [0, 1, 2]
    assert [s.source_topics for s in subs] == [("c-topic",), ("a-topic",), ("b-topic",)]
    assert [s.sink_topics for s in subs] == [("c-out",), ("a-out",), ("b-out",)]


def test_each_subtopology_holds_exactly_its_own_nodes_in_declaration_order() -> None:
    topology = Topology("nodes")
    a = topology.stream("a", name="src-a")
    b = topology.stream("b", name="src-b")
    a.map_values(len, name="len-a").to("a-out", name="sink-a")
    b.peek(print, name="peek-b").to("b-out", name="sink-b")
    sub_a, sub_b = topology.subtopologies()
    assert [n.name for n in sub_a.nodes] == ["src-a", "len-a", "sink-a"]
    assert [n.name for n in sub_b.nodes] == ["src-b", "peek-b", "sink-b"]


def test_merge_joins_two_streams_into_one_subtopology() -> None:
    topology = Topology("merged")
    a = topology.stream("a")
    b = topology.stream("b")
    lone = topology.stream("lone")
    a.merge(b).to("out")
    lone.to("lone-out")
    subs = topology.subtopologies()
    assert [s.source_topics for s in subs] == [("a", "b"), ("lone",)]
    assert [s.id for s in subs] == [0, 1]


def test_merge_of_later_streams_keeps_the_earliest_source_position() -> None:
    topology = Topology("reordered")
    first = topology.stream("first")
    second = topology.stream("second")
    third = topology.stream("third")
    third.merge(first).to("x")
    second.to("y")
    subs = topology.subtopologies()
    assert [set(s.source_topics) for s in subs] == [{"first", "third"}, {"second"}]


def test_merge_through_split_branches_stays_one_subtopology() -> None:
    topology = Topology("diamond")
    source = topology.stream("in")
    branches = source.split({"a": lambda k, v: True}, default="rest")
    branches["a"].merge(branches["rest"]).to("out")
    [sub] = topology.subtopologies()
    assert sub.source_topics == ("in",)


def test_two_sinks_to_one_topic_list_it_once() -> None:
    topology = Topology("fan-in")
    s = topology.stream("in")
    s.to("out")
    s.map_values(bytes.upper).to("out")
    [sub] = topology.subtopologies()
    assert sub.sink_topics == ("out",)


def test_subtopology_numbering_is_stable_across_calls() -> None:
    topology = Topology("stable")
    topology.stream("a").to("x")
    topology.stream("b").to("y")
    assert topology.subtopologies() == topology.subtopologies()


def test_describe_names_sources_processors_sinks_and_subtopologies() -> None:
    topology = Topology("described")
    words = topology.stream("lines", value_serde=serdes.StringSerde(), name="read-lines")
    words.flat_map_values(str.split, name="split-words").to(
        "words", value_serde=serdes.StringSerde(), name="write-words"
    )
    topology.stream("other", key_serde=serdes.IntSerde(), value_serde=serdes.JsonSerde()).to(
        "other-out"
    )
    text = topology.describe()
    lines = text.splitlines()
    assert lines[0] == "Topology: described"
    assert "  Sub-topology 0" in lines
    assert "  Sub-topology 1" in lines
    assert lines.index("  Sub-topology 0") < lines.index("  Sub-topology 1")
    assert (
        "    Source: read-lines (topic: lines, key: bytes, value: string) --> split-words" in lines
    )
    assert "    Processor: split-words (flat_map_values) --> write-words <-- read-lines" in lines
    sink = "    Sink: write-words (topic: words, key: bytes, value: string) <-- split-words"
    assert sink in lines
    # the second stream is described under the second sub-topology, with its serdes
    second = text.split("  Sub-topology 1", 1)[1]
    assert "Source: " in second and "(topic: other, key: int, value: json)" in second
    assert "Sink: " in second and "(topic: other-out, key: int, value: json)" in second
    assert "read-lines" not in second


def test_describe_lists_every_child_of_a_node() -> None:
    topology = Topology("fan-out")
    s = topology.stream("in", name="src")
    s.to("a", name="to-a")
    s.to("b", name="to-b")
    assert "Source: src (topic: in, key: bytes, value: bytes) --> to-a, to-b" in topology.describe()


def test_describe_shows_both_parents_of_a_merge() -> None:
    topology = Topology("m")
    a = topology.stream("a", name="src-a")
    b = topology.stream("b", name="src-b")
    a.merge(b, name="both").to("out", name="sink")
    text = topology.describe()
    assert "Processor: both (merge) --> sink <-- src-a, src-b" in text
    assert text.count("Sub-topology") == 1


def test_generated_node_names_are_unique_and_name_the_operator() -> None:
    topology = Topology("names")
    s = topology.stream("in")
    f = s.filter(lambda k, v: True)
    m = f.map_values(len)
    assert len({s.node_name, f.node_name, m.node_name}) == 3
    assert s.node_name.startswith("source")
    assert f.node_name.startswith("filter")
    assert m.node_name.startswith("map_values")


def test_the_same_source_topic_twice_is_rejected() -> None:
    topology = Topology("dup-source")
    topology.stream("in")
    with pytest.raises(TopologyError, match="'in'"):
        topology.stream("in")


def test_a_duplicate_node_name_is_rejected_naming_it() -> None:
    topology = Topology("dup-node")
    s = topology.stream("in", name="step")
    with pytest.raises(TopologyError, match="'step'"):
        s.filter(lambda k, v: True, name="step")


def test_a_duplicate_sink_name_is_rejected() -> None:
    topology = Topology("dup-sink")
    s = topology.stream("in")
    s.to("a", name="out")
    with pytest.raises(TopologyError, match="'out'"):
        s.to("b", name="out")


def test_a_duplicate_source_node_name_is_rejected() -> None:
    topology = Topology("dup-source-name")
    topology.stream("a", name="src")
    with pytest.raises(TopologyError, match="'src'"):
        topology.stream("b", name="src")


def test_a_rejected_declaration_leaves_the_topology_usable() -> None:
    topology = Topology("recovers")
    s = topology.stream("in", name="src")
    with pytest.raises(TopologyError):
        topology.stream("in")
    s.to("out")
    [sub] = topology.subtopologies()
    assert sub.source_topics == ("in",)


@pytest.mark.parametrize("name", ["words", "app.v2", "my_app-1", "A"])
def test_valid_topology_names(name: str) -> None:
    assert Topology(name).name == name


@pytest.mark.parametrize(
    "name", ["", "has space", "slash/name", "colon:name", "café", "x²", "日本"]
)
def test_invalid_topology_name_is_rejected_naming_it(name: str) -> None:
    with pytest.raises(TopologyError) as excinfo:
        Topology(name)
    assert repr(name) in str(excinfo.value)
