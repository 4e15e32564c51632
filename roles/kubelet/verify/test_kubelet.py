"""The kubelet role: the unit runs (KillMode=process, so pods survive its restarts),
its HTTPS API answers with the node's certificate, and the API server shows this host's
Node Ready with a fresh Lease.

Requests run on the host in one run of the venv's python (the image has no curl or
kubectl), authenticated with the node's own certificate from the kubelet's directory.
"""

import json

from labctl.verify.checks import (
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    once_per_host,
    run_json,
)

# argv: server URL, config dir, node name, kubelet healthz URL
STATE = r"""
import json, ssl, sys, urllib.request
server, conf, node, healthz = sys.argv[1:5]
ctx = ssl.create_default_context(cafile=conf + "/ca.crt")
ctx.load_cert_chain(conf + "/kubelet.crt", conf + "/kubelet.key")
report = {}
def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5, context=ctx) as resp:
            return resp.read().decode()
    except Exception as exc:
        return f"ERROR {type(exc).__name__}: {exc}"
report["healthz"] = get(healthz)
report["node"] = get(f"{server}/api/v1/nodes/{node}")
report["lease"] = get(f"{server}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}")
print(json.dumps(report))
"""


_states: dict[str, dict] = {}


def state(host, hostvars):
    """The report of STATE for this host (read once, judged by several checks)."""
    def read():
        healthz = f"https://{hostvars['kubelet_node_ip']}:{hostvars['kubelet_port']}/healthz"
        _, report = run_json(host, [hostvars["kubelet_python"], "-c", STATE,
                                    hostvars["kube_apiserver_url"], hostvars["kubelet_config_dir"],
                                    hostvars["kubelet_node_name"], healthz])
        return report
    return once_per_host(_states, host, read)


def parsed(text, what):
    assert not text.startswith("ERROR"), f"{what}: {text}"
    return json.loads(text)


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["kubelet_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["kubelet_service"])


def test_unit_stops_only_the_kubelet_not_the_pods(host, hostvars):
    mode = host.check_output(f"systemctl show -p KillMode --value {hostvars['kubelet_service']}")
    assert mode.strip() == "process", f"KillMode is {mode.strip()!r}: stopping the kubelet " \
        "would kill every pod's containers"


def test_node_key_is_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['kubelet_config_dir']}/kubelet.key"])


def test_kubelet_serves_healthz_over_https(host, hostvars):
    report = state(host, hostvars)
    assert report["healthz"] == "ok", f"kubelet /healthz: {report['healthz']}"


def test_node_is_registered_ready_with_its_address(host, hostvars):
    node = parsed(state(host, hostvars)["node"], f"GET node {hostvars['kubelet_node_name']}")
    conditions = {c["type"]: c["status"] for c in node["status"].get("conditions", [])}
    assert conditions.get("Ready") == "True", f"node conditions: {conditions}"
    addresses = {a["type"]: a["address"] for a in node["status"].get("addresses", [])}
    assert addresses.get("InternalIP") == hostvars["kubelet_node_ip"], addresses
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == \
        hostvars["kubelet_port"]
    assert node["spec"].get("podCIDR"), "the node has no pod CIDR (is Node IPAM running?)"


def test_node_lease_is_held_by_the_node(host, hostvars):
    lease = parsed(state(host, hostvars)["lease"], "GET the node's Lease")
    assert lease["spec"]["holderIdentity"] == hostvars["kubelet_node_name"]
    assert lease["spec"].get("renewTime"), lease
