"""The pod network on nspawn hosts, through the CLI as a user runs it.

The default lab's shape (cp-1 with the stacked etcd member and the API server, two
workers) with the common, etcd, apiserver and podnet plays. Node objects for the
workers are created the way a kubelet and Node IPAM would leave them (pod CIDR,
InternalIP = the host's lab address); then:
- ``labctl verify`` passes the podnet suite on every host (daemon up, forwarding on,
  routes to every other node's pod CIDR);
- a pod (a netns + BridgeNetwork, run by the host's venv python) on worker-1 reaches a
  pod on worker-2 with its own address, and the API server's port on cp-1;
- the pod cannot reach the lab machine or anything outside the lab;
- deleting a Node removes its route from every host;
- a second deploy changes nothing in the podnet play.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from pathlib import Path

import pytest

from agents.kube.client import KubeClient
from labctl.inventory import load_inventory
from labctl.state import labctl_home
from tests.conftest import need_tool
from tests.lab.test_lifecycle import Lab, free_subnet, leftovers, shared_image_home, write_inventory

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]

SITE = """\
- name: common setup of every host
  hosts: all
  roles: [common]
- name: etcd members
  hosts: etcd
  roles: [etcd]
- name: API servers
  hosts: control_plane
  roles: [apiserver]
- name: pod network
  hosts: all
  roles: [podnet]
"""

CIDRS = {"worker-1": "10.244.1.0/24", "worker-2": "10.244.2.0/24"}

# On a worker: a pod netns wired by BridgeNetwork as the runtime does (argv: sandbox,
# pod CIDR); the lab machine (the host's default gateway) is blocked by default.
POD = ("ip netns add {ns} && /opt/lab/venv/bin/python -c 'import sys; "
       "from agents.podnet import BridgeNetwork; "
       "print(BridgeNetwork(pod_cidr=sys.argv[2]).setup(sys.argv[1], \"/run/netns/{ns}\"))' "
       "{ns} {cidr}")
# In a pod: answer 3 connections with who connected (backgrounded, so ssh returns).
SERVE = ("(ip netns exec {ns} python3 -c 'import socket\n"
         "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
         "s.bind((\"0.0.0.0\", 8080)); s.listen()\n"
         "for _ in range(3):\n"
         "    c, p = s.accept(); c.sendall(p[0].encode()); c.close()' "
         "</dev/null >/dev/null 2>&1 &) ; "
         "for i in $(seq 50); do ip netns exec {ns} ss -ltn | grep -q :8080 && exit 0; "
         "sleep 0.1; done; exit 1")
# In a pod: connect to each HOST:PORT, print what happened as JSON.
PROBE = ("ip netns exec {ns} python3 -c 'import errno, json, socket, sys\n"
         "out = {{}}\n"
         "for target in sys.argv[1:]:\n"
         "    host, port = target.rsplit(\":\", 1)\n"
         "    try:\n"
         "        c = socket.create_connection((host, int(port)), timeout=5)\n"
         "        c.settimeout(2)\n"
         "        try:\n"
         "            out[target] = \"connected \" + c.recv(100).decode()\n"
         "        except OSError:\n"
         "            out[target] = \"connected\"\n"
         "    except OSError as exc:\n"
         "        out[target] = errno.errorcode.get(exc.errno, str(exc))\n"
         "print(json.dumps(out))' {targets}")


@pytest.fixture
def podnet_lab(base_image, tmp_path):
    need_tool("systemd-nspawn")
    need_tool("ssh")
    home = shared_image_home(tmp_path)
    shared_wheels = labctl_home() / "wheelhouse"
    shared_wheels.mkdir(parents=True, exist_ok=True)
    (home / "wheelhouse").symlink_to(shared_wheels)
    (tmp_path / "site.yml").write_text(SITE)
    (tmp_path / "roles").symlink_to(REPO / "roles")
    name = f"pn{random.randrange(16**6):06x}"
    network = free_subnet()
    lab = Lab(home, write_inventory(tmp_path / "lab.yml", name, "nspawn", network), name)
    lab.lab_machine = str(network.network_address + 1)
    try:
        yield lab
    finally:
        lab.labctl("down", "-i", str(lab.inventory), check=False)
        assert not leftovers(lab, f"lc-{name}")


def ssh(lab: Lab, host: str, command: str, check: bool = True) -> str:
    return lab.labctl("ssh", "-i", str(lab.inventory), host, "--", command, check=check,
                      timeout=120).stdout


def owned_routes(lab: Lab, host: str) -> dict[str, str]:
    out = json.loads(ssh(lab, host, "ip -j -4 route show proto 77") or "[]")
    return {r["dst"]: r.get("gateway") for r in out}


def eventually(predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)


async def nodes_api(kubeconfig: Path, verb: str, addresses: dict[str, str]) -> None:
    async with KubeClient.from_kubeconfig(str(kubeconfig)) as api:
        for name, cidr in CIDRS.items():
            if verb == "create":
                await api.create("nodes", {
                    "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
                    "spec": {"podCIDR": cidr, "podCIDRs": [cidr]},
                    "status": {"addresses": [{"type": "InternalIP",
                                              "address": addresses[name]}]}})
            elif name == verb.removeprefix("delete "):
                await api.delete("nodes", name)


def test_podnet_role_routes_pods_between_nodes_and_keeps_them_in_the_lab(podnet_lab, tmp_path):
    lab = podnet_lab
    inv = str(lab.inventory)
    site = ("--site", str(tmp_path / "site.yml"))
    assert lab.up(*site, "--no-verify")["deployed"] is True
    addresses = {h: str(host.address) for h, host in load_inventory(lab.inventory).hosts.items()}

    kubeconfig = tmp_path / "admin.kubeconfig"
    kubeconfig.write_text(lab.labctl("kubeconfig", "-i", inv, timeout=60).stdout)
    asyncio.run(nodes_api(kubeconfig, "create", addresses))
    wanted = {"cp-1": {CIDRS["worker-1"]: addresses["worker-1"],
                       CIDRS["worker-2"]: addresses["worker-2"]},
              "worker-1": {CIDRS["worker-2"]: addresses["worker-2"]},
              "worker-2": {CIDRS["worker-1"]: addresses["worker-1"]}}
    for host, routes in wanted.items():
        eventually(lambda h=host, r=routes: owned_routes(lab, h) == r, f"routes on {host}")

    verified = lab.labctl("verify", "-i", inv, *site, "--roles", "podnet", "--json",
                          check=False, timeout=300)
    report = json.loads(verified.stdout)
    failed = [r for r in report["results"] if r["outcome"] != "passed"]
    assert not failed, json.dumps(failed, indent=2)
    assert set(report["roles"]["podnet"]) == {"cp-1", "worker-1", "worker-2"}

    ip1 = ssh(lab, "worker-1", POD.format(ns="pod1", cidr=CIDRS["worker-1"])).split()[-1]
    ip2 = ssh(lab, "worker-2", POD.format(ns="pod2", cidr=CIDRS["worker-2"])).split()[-1]
    assert (ip1, ip2) == ("10.244.1.2", "10.244.2.2")
    ssh(lab, "worker-2", SERVE.format(ns="pod2"))
    targets = [f"{ip2}:8080", f"{addresses['cp-1']}:6443", f"{lab.lab_machine}:22",
               "203.0.113.7:80"]
    seen = json.loads(ssh(lab, "worker-1", PROBE.format(ns="pod1", targets=" ".join(targets))))
    assert seen[f"{ip2}:8080"] == f"connected {ip1}", seen  # no NAT on the way
    assert seen[f"{addresses['cp-1']}:6443"].startswith("connected"), seen
    assert seen[f"{lab.lab_machine}:22"] in ("ENETUNREACH", "EHOSTUNREACH"), seen
    assert seen["203.0.113.7:80"] in ("ENETUNREACH", "EHOSTUNREACH"), seen

    asyncio.run(nodes_api(kubeconfig, "delete worker-2", addresses))
    for host in ("cp-1", "worker-1"):
        eventually(lambda h=host: CIDRS["worker-2"] not in owned_routes(lab, h),
                   f"the route to worker-2's pods to leave {host}")

    again = json.loads(lab.labctl("deploy", "-i", inv, *site, "--json", timeout=600).stdout)
    assert again["ok"], again["failures"]
    # Agents edited since the first deploy are pushed again, and then the daemon must
    # restart to run them; nothing else may change.
    pushed = any(task["name"].endswith("push the agents bundle") and
                 any(r.get("changed") for r in task["hosts"].values())
                 for play in again["plays"] for task in play["tasks"])
    allowed = {"restart when the agents changed", "restart podnet"} if pushed else set()
    changed = [f"{task['name']} on {host}" for play in again["plays"]
               if play["name"] == "pod network" for task in play["tasks"]
               for host, r in task["hosts"].items()
               if r.get("changed") and task["name"].rpartition(" : ")[2] not in allowed]
    assert not changed, changed
