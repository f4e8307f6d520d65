"""pytest fixtures for testing topologies. Enable them in a `conftest.py` with
`pytest_plugins = ["processor.testing.pytest_plugin"]`."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from processor.dsl.topology import Topology
from processor.testing.driver import TopologyTestDriver


@pytest.fixture
def topology_driver() -> Iterator[Callable[[Topology], TopologyTestDriver]]:
    """A factory: `driver = topology_driver(topology)` runs `topology` in memory."""

    def make(topology: Topology) -> TopologyTestDriver:
        return TopologyTestDriver(topology)

    yield make
