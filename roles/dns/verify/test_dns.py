"""The dns role: the DNS server runs on the host's address, answers for the cluster
domain (the `kubernetes` Service resolves to the first address of lab_service_cidr,
as dns_service_cidr),
refuses other names, and is listed in the kube-dns Service's Endpoints.

Queries run on the host with the agents' own query tool (the image has no dig):
`python -m agents.dns.query`, which prints the answer as JSON.
"""

import ipaddress

from labctl.verify.checks import (
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    run_json,
)

# argv: kubeconfig; prints kube-dns's Service ClusterIP and Endpoints addresses
KUBE_DNS = r"""
import asyncio, json, sys
from agents.kube.client import KubeClient
async def main():
    async with KubeClient.from_kubeconfig(sys.argv[1]) as api:
        svc = await api.get("services", "kube-dns", "kube-system")
        ep = await api.get("endpoints", "kube-dns", "kube-system")
        return {"clusterIP": svc["spec"].get("clusterIP"),
                "addresses": sorted(a["ip"] for s in ep.get("subsets") or []
                                    for a in s.get("addresses") or [])}
try:
    print(json.dumps(asyncio.run(main())))
except Exception as exc:
    print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
"""


def query(host, hostvars, name, rdtype="A", tcp=False):
    argv = [hostvars["dns_python"], "-m", "agents.dns.query", "--server",
            hostvars["dns_listen_address"], "--port", str(hostvars["dns_port"]), name, rdtype]
    if tcp:
        argv.insert(3, "--tcp")
    rc, answer = run_json(host, argv)
    assert rc == 0, f"no answer from {hostvars['dns_listen_address']}: {answer}"
    return answer


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["dns_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["dns_service"])


def test_kubernetes_service_resolves_to_the_first_service_ip(host, hostvars):
    first = str(ipaddress.ip_network(hostvars["dns_service_cidr"])[1])
    name = f"kubernetes.default.svc.{hostvars['dns_domain']}"
    for tcp in (False, True):
        answer = query(host, hostvars, name, tcp=tcp)
        assert answer["rcode"] == "NOERROR", f"{name} ({'TCP' if tcp else 'UDP'}): {answer}"
        assert [line.split()[-1] for line in answer["answer"]] == [first], answer


def test_unknown_names_are_nxdomain_and_outside_names_refused(host, hostvars):
    missing = query(host, hostvars, f"no-such-service.default.svc.{hostvars['dns_domain']}")
    assert missing["rcode"] == "NXDOMAIN", missing
    outside = query(host, hostvars, "example.org")
    assert outside["rcode"] == "REFUSED", outside


def test_listed_in_the_kube_dns_service(host, hostvars):
    rc, seen = run_json(host, [hostvars["dns_python"], "-c", KUBE_DNS,
                               hostvars["dns_kubeconfig"]])
    assert "error" not in seen, f"reading kube-system/kube-dns: {seen}"
    assert seen["clusterIP"] == hostvars["dns_service_ip"], seen
    assert hostvars["dns_listen_address"] in seen["addresses"], (
        f"{hostvars['dns_listen_address']} is not in kube-dns's Endpoints: {seen}")
