"""`processor.status.graph`: the status page's drawing of a topology."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from itertools import combinations

from processor import Topology, serdes
from processor.status.graph import BOX_HEIGHT, BOX_WIDTH, NodeKind, graph_of, layout, render_svg

SVG = "{http://www.w3.org/2000/svg}"


def _counting() -> Topology:
    """Two sub-topologies: re-keyed through a repartition topic, then counted in a store."""
    topology = Topology("counting")
    (
        topology.stream("words", key_serde=serdes.StringSerde(), value_serde=serdes.StringSerde())
        .group_by(lambda _key, value: value)
        .count(name="counts")
        .to_stream()
        .to("word-counts", value_serde=serdes.IntSerde())
    )
    return topology


def test_every_source_operator_store_and_sink_is_a_box() -> None:
    graph = graph_of(_counting().subtopologies("app"))
    assert [sub.id for sub in graph] == [0, 1]
    kinds = {(sub.id, box.kind) for sub in graph for box in sub.boxes}
    assert {(0, NodeKind.SOURCE), (0, NodeKind.SINK), (1, NodeKind.SOURCE)} <= kinds
    assert (1, NodeKind.STORE) in kinds and (1, NodeKind.OPERATOR) in kinds
    labels = [box.label for sub in graph for box in sub.boxes]
    assert "words" in labels and "word-counts" in labels and "counts" in labels
    # The repartition topic is sub-topology 0's sink and sub-topology 1's source.
    repartition = [b for sub in graph for b in sub.boxes if b.label.endswith("-repartition")]
    assert [b.kind for b in repartition] == [NodeKind.SINK, NodeKind.SOURCE]


def test_edges_point_right_and_boxes_do_not_overlap() -> None:
    graph = graph_of(_counting().subtopologies("app"))
    placed = layout(graph)
    for sub in graph:
        for box in sub.boxes:
            x, y = placed.boxes[(sub.id, box.name)]
            assert x >= 0 and x + BOX_WIDTH <= placed.width
            assert y >= 0 and y + BOX_HEIGHT <= placed.height
            if box.kind is not NodeKind.STORE:
                for parent in box.parents:
                    assert placed.boxes[(sub.id, parent)][0] < x, (box.name, parent)
    corners = list(placed.boxes.values())
    for (x1, y1), (x2, y2) in combinations(corners, 2):
        assert abs(x1 - x2) >= BOX_WIDTH or abs(y1 - y2) >= BOX_HEIGHT


def test_the_svg_is_well_formed_and_self_contained() -> None:
    graph = graph_of(_counting().subtopologies("app"))
    svg = render_svg(graph, layout(graph))
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    nodes = [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "")]
    assert len(nodes) == sum(len(sub.boxes) for sub in graph)
    assert "http" not in svg.replace("http://www.w3.org/2000/svg", "")  # nothing fetched
    assert "<script" not in svg


def test_labels_are_escaped() -> None:
    topology = Topology("t")
    topology.stream("a<b>&c").to("out")
    graph = graph_of(topology.subtopologies("t"))
    svg = render_svg(graph, layout(graph))
    ET.fromstring(svg)  # would not parse with the raw text
    assert "a&lt;b&gt;&amp;c" in svg
