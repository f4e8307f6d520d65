"""What users write: a `Topology` and the `Stream`s in it."""

from processor.dsl.stream import Stream
from processor.dsl.topology import Topology

__all__ = ["Stream", "Topology"]
