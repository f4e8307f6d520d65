"""Finding the topology a user named as `MODULE[:ATTR]`."""

from __future__ import annotations

import importlib
import os
import sys

from processor.dsl.topology import Topology
from processor.errors import TopologyLoadError


def load_topology(spec: str) -> Topology:
    """Import MODULE and return ATTR, or the module's only Topology when ATTR is omitted."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise TopologyLoadError(
            f"{spec!r} names no module; use MODULE[:ATTR], e.g. topologies.words"
        )
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name == e.name or module_name.startswith(e.name + ".")):
            raise TopologyLoadError(
                f"cannot find module {e.name!r} (from {spec!r}); check the spelling and that it is "
                "importable from the current directory"
            ) from None
        raise TopologyLoadError(f"module {module_name!r} failed to import: {e}") from e
    except Exception as e:
        raise TopologyLoadError(
            f"module {module_name!r} failed to import: {type(e).__name__}: {e}"
        ) from e
    if attr:
        if not hasattr(module, attr):
            raise TopologyLoadError(
                f"module {module_name!r} has no attribute {attr!r}; "
                f"its topologies: {', '.join(_topologies_in(module)) or 'none'}"
            )
        found = getattr(module, attr)
        if not isinstance(found, Topology):
            raise TopologyLoadError(
                f"{spec!r} is a {type(found).__name__}, not a processor.Topology"
            )
        return found
    names = _topologies_in(module)
    if len(names) != 1:
        raise TopologyLoadError(
            f"module {module_name!r} defines {len(names)} topologies"
            f"{' (' + ', '.join(names) + ')' if names else ''}; name one as {module_name}:ATTR"
        )
    topology: Topology = getattr(module, names[0])
    return topology


def check_runnable(topology: Topology) -> None:
    """A topology a worker can run reads something: a topic, a global table or a source outside
    Kafka. One that reads nothing would join the group and idle, with nothing to say why."""
    graph = topology.graph
    if not graph.nodes and not graph.global_tables and not graph.external_sources:
        raise TopologyLoadError(
            f"topology {topology.name!r} reads nothing: add a stream(), table(), global_table() "
            "or a source to it (was it built in a function that was not called?)"
        )


def _topologies_in(module: object) -> list[str]:
    return sorted(n for n, v in vars(module).items() if isinstance(v, Topology))
