"""Tools for testing topologies: an in-memory driver, and a real local Kafka broker."""

from processor.testing.driver import OutputRecord, TopologyTestDriver

__all__ = ["OutputRecord", "TopologyTestDriver"]
