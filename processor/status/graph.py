"""A topology drawn as a graph, in SVG, for the status page: no script, no stylesheet from
elsewhere, so it shows on a host without internet.

`graph_of()` turns the sub-topologies into boxes and edges (`TopologyGraph`), `layout()` places
them (`Placed`), `render_svg()` writes the SVG. The layout is layered, left to right: a node's
column is the length of the longest path from a source to it, so every edge points right;
the nodes of one column are stacked in declaration order. A store sits in a row below its
sub-topology's nodes, under the first operator that uses it, joined to each of its operators by
a dashed line. Sub-topologies are stacked top to bottom, each in a frame with its number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from html import escape

from processor.topology.graph import OperatorNode, SinkNode, SourceNode, parents_of
from processor.topology.subtopology import SubTopology

__all__ = [
    "BOX_HEIGHT",
    "BOX_WIDTH",
    "Box",
    "NodeKind",
    "Placed",
    "SubGraph",
    "TopologyGraph",
    "graph_of",
    "layout",
    "render_svg",
    "topology_svg",
]

BOX_WIDTH = 180
BOX_HEIGHT = 44
_COLUMN_GAP = 50
_ROW_GAP = 16
_FRAME_PAD = 16
_TITLE_HEIGHT = 22
_FRAME_GAP = 20
# Longer labels are cut (the whole text is the box's tooltip): a box has room for about this many.
_LABEL_CHARS = 26


class NodeKind(Enum):
    SOURCE = "source"
    OPERATOR = "operator"
    SINK = "sink"
    STORE = "store"


@dataclass(frozen=True)
class Box:
    """One node of the drawing: `name` is unique within its sub-topology."""

    name: str
    kind: NodeKind
    label: str  # what the box says: a topic, an operator's kind, a store's name
    parents: tuple[str, ...] = ()  # edges come from these boxes (a store: the operators using it)


@dataclass(frozen=True)
class SubGraph:
    id: int
    boxes: tuple[Box, ...]


TopologyGraph = tuple[SubGraph, ...]


def graph_of(subtopologies: Sequence[SubTopology]) -> TopologyGraph:
    """Boxes and edges of every sub-topology: its sources, operators, sinks and stores."""
    graphs: list[SubGraph] = []
    for sub in subtopologies:
        boxes: list[Box] = []
        if sub.source is not None:  # a source outside Kafka, alone in its sub-topology
            boxes.append(Box("source", NodeKind.SOURCE, sub.source.describe()))
        users: dict[str, list[str]] = {}
        for node in sub.nodes:
            if isinstance(node, SourceNode):
                boxes.append(Box(node.name, NodeKind.SOURCE, node.topic))
            elif isinstance(node, SinkNode):
                boxes.append(Box(node.name, NodeKind.SINK, node.topic, parents_of(node)))
            else:
                assert isinstance(node, OperatorNode)
                boxes.append(Box(node.name, NodeKind.OPERATOR, node.kind.value, node.parents))
                for store in node.stores:
                    users.setdefault(store, []).append(node.name)
        for store, operators in users.items():
            boxes.append(Box(f"store:{store}", NodeKind.STORE, store, tuple(operators)))
        graphs.append(SubGraph(sub.id, tuple(boxes)))
    return tuple(graphs)


@dataclass(frozen=True)
class Placed:
    """Where each box is drawn: (sub-topology, box name) -> its top-left corner; each
    sub-topology's frame as (id, x, y, width, height); the whole drawing's size."""

    boxes: dict[tuple[int, str], tuple[int, int]]
    frames: tuple[tuple[int, int, int, int, int], ...]
    width: int
    height: int


def _columns(sub: SubGraph) -> dict[str, int]:
    """Each box's column: the longest path to it from a box without parents. A store takes
    the column of its first operator."""
    column: dict[str, int] = {}
    by_name = {box.name: box for box in sub.boxes}

    def of(name: str, seen: frozenset[str]) -> int:
        if name not in column:
            box = by_name.get(name)
            parents = [p for p in box.parents if p in by_name and p not in seen] if box else []
            if box is not None and box.kind is NodeKind.STORE:
                column[name] = of(parents[0], seen | {name}) if parents else 0
            else:
                column[name] = 1 + max((of(p, seen | {name}) for p in parents), default=-1)
        return column[name]

    for box in sub.boxes:
        of(box.name, frozenset())
    return column


def layout(graph: TopologyGraph) -> Placed:
    boxes: dict[tuple[int, str], tuple[int, int]] = {}
    frames: list[tuple[int, int, int, int, int]] = []
    top = 0
    width = 0
    for sub in graph:
        columns = _columns(sub)
        rows: dict[int, int] = {}  # column -> boxes placed in it so far (nodes)
        store_rows: dict[int, int] = {}
        nodes = [b for b in sub.boxes if b.kind is not NodeKind.STORE]
        stores = [b for b in sub.boxes if b.kind is NodeKind.STORE]
        y0 = top + _TITLE_HEIGHT + _FRAME_PAD
        for box in nodes:
            column = columns[box.name]
            row = rows.get(column, 0)
            rows[column] = row + 1
            boxes[(sub.id, box.name)] = (_x(column), y0 + row * (BOX_HEIGHT + _ROW_GAP))
        node_rows = max(rows.values(), default=0)
        stores_y0 = y0 + node_rows * (BOX_HEIGHT + _ROW_GAP)
        for box in stores:
            column = columns[box.name]
            row = store_rows.get(column, 0)
            store_rows[column] = row + 1
            boxes[(sub.id, box.name)] = (_x(column), stores_y0 + row * (BOX_HEIGHT + _ROW_GAP))
        all_rows = node_rows + max(store_rows.values(), default=0)
        used_columns = max(columns.values(), default=0) + 1
        frame_width = 2 * _FRAME_PAD + used_columns * BOX_WIDTH + (used_columns - 1) * _COLUMN_GAP
        frame_height = (
            _TITLE_HEIGHT + 2 * _FRAME_PAD + all_rows * BOX_HEIGHT + (all_rows - 1) * _ROW_GAP
        )
        frames.append((sub.id, 0, top, frame_width, frame_height))
        width = max(width, frame_width)
        top += frame_height + _FRAME_GAP
    return Placed(boxes, tuple(frames), width + 1, max(top - _FRAME_GAP, 0) + 1)


def _x(column: int) -> int:
    return _FRAME_PAD + column * (BOX_WIDTH + _COLUMN_GAP)


_FILL = {
    NodeKind.SOURCE: "#dbeafe",
    NodeKind.OPERATOR: "#f3f4f6",
    NodeKind.SINK: "#dcfce7",
    NodeKind.STORE: "#fef3c7",
}


def render_svg(graph: TopologyGraph, placed: Placed) -> str:
    """The drawing as one `<svg>` element, to put inline in a page."""
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="topology" width="{placed.width}" '
        f'height="{placed.height}" viewBox="0 0 {placed.width} {placed.height}" '
        'font-family="sans-serif" font-size="12">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker></defs>',
    ]
    for sub_id, x, y, w, h in placed.frames:
        parts.append(
            f'<g class="subtopology"><rect x="{x}" y="{y}" width="{w - 1}" height="{h}" rx="6" '
            f'fill="none" stroke="#9ca3af"/><text x="{x + 8}" y="{y + 16}" font-weight="bold">'
            f"Sub-topology {sub_id}</text></g>"
        )
    for sub in graph:
        for box in sub.boxes:
            parts.extend(_edges(sub.id, box, placed))
    for sub in graph:
        for box in sub.boxes:
            parts.append(_box(sub.id, box, placed))
    parts.append("</svg>")
    return "\n".join(parts)


def _edges(sub_id: int, box: Box, placed: Placed) -> list[str]:
    x, y = placed.boxes[(sub_id, box.name)]
    lines = []
    for parent in box.parents:
        if (sub_id, parent) not in placed.boxes:
            continue
        px, py = placed.boxes[(sub_id, parent)]
        if box.kind is NodeKind.STORE:  # operator (above) -- store (below), no direction
            middle = BOX_WIDTH // 2
            lines.append(
                f'<line x1="{px + middle}" y1="{py + BOX_HEIGHT}" x2="{x + middle}" y2="{y}" '
                'stroke="#b45309" stroke-dasharray="4 3"/>'
            )
        else:
            lines.append(
                f'<line x1="{px + BOX_WIDTH}" y1="{py + BOX_HEIGHT // 2}" x2="{x}" '
                f'y2="{y + BOX_HEIGHT // 2}" stroke="#555" marker-end="url(#arrow)"/>'
            )
    return lines


def _box(sub_id: int, box: Box, placed: Placed) -> str:
    x, y = placed.boxes[(sub_id, box.name)]
    label = box.label if len(box.label) <= _LABEL_CHARS else box.label[: _LABEL_CHARS - 1] + "…"
    rounded = 14 if box.kind is NodeKind.STORE else 4
    return (
        f'<g class="node {box.kind.value}"><title>{escape(box.kind.value)} {escape(box.name)}: '
        f"{escape(box.label)}</title>"
        f'<rect x="{x}" y="{y}" width="{BOX_WIDTH}" height="{BOX_HEIGHT}" rx="{rounded}" '
        f'fill="{_FILL[box.kind]}" stroke="#374151"/>'
        f'<text x="{x + 8}" y="{y + 17}" fill="#6b7280" font-size="10">{box.kind.value}</text>'
        f'<text x="{x + 8}" y="{y + 34}">{escape(label)}</text></g>'
    )


def topology_svg(subtopologies: Sequence[SubTopology]) -> str:
    graph = graph_of(subtopologies)
    return render_svg(graph, layout(graph))
