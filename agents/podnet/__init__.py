"""The pod network: a node bridge with one veth per pod (`BridgeNetwork`, the plugin the
container runtime calls) and the route-sync daemon (`python -m agents.podnet`) that keeps
a host-gw route to every other node's pod CIDR."""

from .bridge import BridgeNetwork
from .errors import CommandError, PodNetError

__all__ = ["BridgeNetwork", "CommandError", "PodNetError"]
