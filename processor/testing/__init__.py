"""Tools for testing topologies: an in-memory driver, and a real local Kafka broker."""

from processor.testing.driver import TopologyTestDriver
from processor.testing.driver_output import OutputRecord

__all__ = ["OutputRecord", "TopologyTestDriver"]
