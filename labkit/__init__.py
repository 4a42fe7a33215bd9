"""labkit: emulate a container platform's network model inside Docker, test it with pytest."""

from labkit import expect
from labkit.lab import Lab
from labkit.topology import load_topology, parse_topology

__all__ = ["Lab", "expect", "load_topology", "parse_topology"]
__version__ = "0.1.0"
