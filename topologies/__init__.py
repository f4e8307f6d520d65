"""Example topologies: each module declares one `Topology` that `processor run` can execute."""
