"""The dns role: the DNS server runs on the host's address, answers for the cluster
domain (the `kubernetes` Service resolves to the first address of lab_service_cidr,
as dns_service_cidr),
refuses other names, and is listed in the kube-dns Service's Endpoints.

Queries run on the host with the agents' own query tool (the image has no dig):
`agents.dns.query`, which prints the answer as JSON; every query the checks need is
asked in one run of the venv's python (its main() once per query), read once per host.
"""

import ipaddress
import json

from labctl.verify.checks import (
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    once_per_host,
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


# argv: a JSON list of [query tool argv, ...]; prints [[exit code, its JSON output], ...]
QUERIES = r"""
import contextlib, io, json, sys
from agents.dns.query import main
answers = []
for argv in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    try:
        answers.append([rc, json.loads(out.getvalue())])
    except ValueError:
        answers.append([rc, {"error": f"no JSON: {out.getvalue()!r}"}])
print(json.dumps(answers))
"""


def asked(hostvars):
    """Every (name, type, tcp) the checks ask this host's server."""
    domain = hostvars["dns_domain"]
    return [(f"kubernetes.default.svc.{domain}", "A", False),
            (f"kubernetes.default.svc.{domain}", "A", True),
            (f"no-such-service.default.svc.{domain}", "A", False),
            ("example.org", "A", False)]


_answers: dict[str, dict] = {}


def answers(host, hostvars):
    """{(name, type, tcp): (exit code, answer)} for every query of asked(), one run per host."""
    def read():
        server = ["--server", hostvars["dns_listen_address"], "--port", str(hostvars["dns_port"])]
        argvs = [server + (["--tcp"] if tcp else []) + [name, rdtype]
                 for name, rdtype, tcp in asked(hostvars)]
        rc, got = run_json(host, [hostvars["dns_python"], "-c", QUERIES, json.dumps(argvs)])
        assert rc == 0 and isinstance(got, list), f"running the query tool failed: {got}"
        return dict(zip(asked(hostvars), [tuple(a) for a in got], strict=True))
    return once_per_host(_answers, host, read)


def query(host, hostvars, name, rdtype="A", tcp=False):
    rc, answer = answers(host, hostvars)[(name, rdtype, tcp)]
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
