"""How many programs `BridgeNetwork.setup` starts per pod (each costs milliseconds of
CPU on a busy node): a new sandbox in a new netns takes the bridge check, one
`ip link add` and one `ip -batch` inside the netns; leftovers from an earlier attempt
fall back to looking and converging. Commands are recorded, nothing runs."""

from __future__ import annotations

import json
import subprocess

import pytest

from agents.podnet import BridgeNetwork
from agents.podnet.addresses import host_interface_name
from agents.podnet.errors import CommandError
from agents.podnet.iproute import Commands

pytestmark = pytest.mark.unit

CIDR = "10.244.7.0/24"
BRIDGE_UP = [{"ifname": "lab-pods", "flags": ["BROADCAST", "UP"],
              "addr_info": [{"family": "inet", "local": "10.244.7.1", "prefixlen": 24}]}]


class Recorder(Commands):
    """Records every program (with the netns it runs in) instead of running it.
    `existing`: link names that are there (host side; "eth0" means the pod's), one set
    shared by the node's and the pod's recorder."""

    def __init__(self, log: list, netns: str | None = None, existing: set[str] | None = None):
        super().__init__(netns)
        self.log, self.existing = log, existing if existing is not None else set()

    def other(self, netns: str) -> Recorder:
        return Recorder(self.log, netns, self.existing)

    def run(self, *args, check=True, input=None):
        self.log.append((self.netns, args, input))
        rc, out = 0, ""
        if args[:2] == ("ip", "-j") and "addr" in args:
            out = json.dumps(BRIDGE_UP)
        elif args[:4] == ("ip", "-j", "link", "show"):  # never paired: ends of other veths
            rc = 0 if args[-1] in self.existing else 1
            out = json.dumps([{"ifname": args[-1], "ifindex": 7, "link_index": 99}])
        elif args[:3] == ("ip", "link", "add"):
            clash = args[3] in self.existing or "eth0" in self.existing
            rc = 2 if clash else 0
            if not clash:
                self.existing.update({args[3], "eth0"})
        elif args[:3] == ("ip", "link", "show"):
            rc = 0 if args[-1] in self.existing else 1
        elif args[:3] == ("ip", "link", "del"):
            rc = 0 if args[-1] in self.existing else 1
            self.existing.discard(args[-1])
        elif args[:2] == ("ip", "-j"):  # routes, rules
            out = "[]"
        if check and rc:
            raise CommandError(list(args), rc, "RTNETLINK answers: File exists")
        return subprocess.CompletedProcess(list(args), rc, out, "")


def network(tmp_path, log, existing=()) -> BridgeNetwork:
    net = BridgeNetwork(pod_cidr=CIDR, state_dir=str(tmp_path),
                        commands=Recorder(log, existing=set(existing)))
    net._bridge_checked = True  # the node side was made so by an earlier setup
    return net


def test_a_new_sandbox_takes_three_programs_and_brings_up_eth0_lo_and_the_route(tmp_path):
    log: list = []
    netns = tmp_path / "ns"
    netns.touch()
    ip = network(tmp_path, log).setup("sb1", str(netns))
    assert ip == "10.244.7.2"
    assert [args[:3] for _, args, _ in log] == [
        ("ip", "-j", "-4"), ("ip", "link", "add"), ("ip", "-batch", "-")]
    where, _, batch = log[-1]
    assert where == str(netns)  # the batch runs inside the pod's netns
    assert batch.splitlines() == [
        "addr replace 10.244.7.2/24 dev eth0", "link set dev lo up", "link set dev eth0 up",
        "route replace default via 10.244.7.1 dev eth0"]
    assert log[1][1][3] == host_interface_name("sb1")


def test_a_leftover_veth_end_falls_back_to_deleting_and_adding_again(tmp_path):
    log: list = []
    netns = tmp_path / "ns"
    netns.touch()
    host = host_interface_name("sb2")
    ip = network(tmp_path, log, existing={host}).setup("sb2", str(netns))
    programs = [" ".join(args[:4]) for _, args, _ in log]
    assert ip == "10.244.7.2"
    first = programs.index(f"ip link add {host}")  # the fast try fails ...
    assert "ip link del dev" in programs[first + 1:]  # ... the leftover is deleted ...
    assert programs[first + 1:].count(f"ip link add {host}") == 1  # ... and added again
    assert programs[-1] == "ip -batch -"


def test_a_sandbox_set_up_again_does_not_take_the_fast_path(tmp_path):
    log: list = []
    netns = tmp_path / "ns"
    netns.touch()
    net = network(tmp_path, log)
    net.setup("sb3", str(netns))
    log.clear()
    net.setup("sb3", str(netns))  # a retry: the address is not new, look at what is there
    assert ("ip", "link", "show", "dev", host_interface_name("sb3")) in [a for _, a, _ in log]
