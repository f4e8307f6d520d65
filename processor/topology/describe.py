"""A topology described as text, in the shape Kafka Streams' `Topology.describe()` prints."""

from __future__ import annotations

from processor.topology.graph import OperatorNode, SinkNode, SourceNode, parents_of
from processor.topology.subtopology import SubTopology


def describe(name: str, subtopologies: list[SubTopology]) -> str:
    lines = [f"Topology: {name}"]
    for sub in subtopologies:
        lines.append(f"  Sub-topology {sub.id}")
        children: dict[str, list[str]] = {n.name: [] for n in sub.nodes}
        for node in sub.nodes:
            for parent in parents_of(node):
                children[parent].append(node.name)
        for node in sub.nodes:
            if isinstance(node, SourceNode):
                event_time = ", timestamp: extracted" if node.timestamp is not None else ""
                head = (
                    f"Source: {node.name} (topic: {node.topic}, "
                    f"key: {node.key_serde.name}, value: {node.value_serde.name}{event_time})"
                )
            elif isinstance(node, SinkNode):
                head = (
                    f"Sink: {node.name} (topic: {node.topic}, "
                    f"key: {node.key_serde.name}, value: {node.value_serde.name})"
                )
            else:
                assert isinstance(node, OperatorNode)
                stores = f", stores: {', '.join(node.stores)}" if node.stores else ""
                windows = ""
                if node.windows is not None:
                    emit = "final" if node.emit_final else "update"
                    windows = f", {node.windows!r}, emit {emit}"
                head = f"Processor: {node.name} ({node.kind.value}{windows}{stores})"
            arrows = ""
            if children[node.name]:
                arrows += f" --> {', '.join(children[node.name])}"
            if parents_of(node):
                arrows += f" <-- {', '.join(parents_of(node))}"
            lines.append(f"    {head}{arrows}")
    return "\n".join(lines)
