"""Topologies the integration tests run in worker processes. Topic names come from the
environment, so each test uses its own topics."""

import os

from processor import Topology

SOURCE = os.environ.get("TEST_SOURCE_TOPIC", "test-source")
SECOND_SOURCE = os.environ.get("TEST_SECOND_SOURCE_TOPIC", "test-source-2")
SINK = os.environ.get("TEST_SINK_TOPIC", "test-sink")
INSTANCE = os.environ.get("PROCESSOR_INSTANCE_ID", "unnamed").encode()

# Tags every value with the instance that processed it: b"<instance>|<value>".
tagging = Topology("tagging")
tagging.stream(SOURCE).map_values(lambda value: INSTANCE + b"|" + value).to(SINK)

# Two co-partitioned sources merged into one sub-topology.
copartitioned = Topology("copartitioned")
copartitioned.stream(SOURCE).merge(copartitioned.stream(SECOND_SOURCE)).to(SINK)
