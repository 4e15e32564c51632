"""Cluster DNS's pure core: the zone built from Services + Endpoints and the answer to a
query (A, SRV, headless, ExternalName, NXDOMAIN, NODATA, REFUSED, truncation), plus the
kube-dns Endpoints edits the registration makes."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest

from agents.dns import registration
from agents.dns.main import parse_args
from agents.dns.records import answer, build_zone, to_wire, udp_limit
from agents.dns.server import handle

pytestmark = pytest.mark.unit

SERVICES = [
    {"metadata": {"name": "kubernetes", "namespace": "default"},
     "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}},
    {"metadata": {"name": "web", "namespace": "shop"},
     "spec": {"clusterIP": "10.96.0.20", "ports": [
         {"name": "http", "port": 80}, {"name": "dns", "port": 53, "protocol": "UDP"},
         {"port": 9000}]}},
    {"metadata": {"name": "db", "namespace": "shop"},
     "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
    {"metadata": {"name": "empty", "namespace": "shop"},
     "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]}},
    {"metadata": {"name": "ext", "namespace": "shop"},
     "spec": {"type": "ExternalName", "externalName": "db.example.org"}},
]
ENDPOINTS = [
    {"metadata": {"name": "db", "namespace": "shop"}, "subsets": [{
        "addresses": [{"ip": "10.244.2.7"}, {"ip": "10.244.1.5", "hostname": "db-0"}],
        "notReadyAddresses": [{"ip": "10.244.3.3"}],
        "ports": [{"name": "pg", "port": 5432}]}]},
]
ZONE = build_zone(SERVICES, ENDPOINTS, "cluster.local")


def ask(name, rdtype="A", zone=ZONE):
    return answer(zone, dns.message.make_query(name, rdtype))


def texts(section):
    return sorted(line for rrset in section for line in rrset.to_text().splitlines())


def test_cluster_ip_service_has_an_authoritative_a_record():
    r = ask("kubernetes.default.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and r.flags & dns.flags.AA
    assert texts(r.answer) == ["kubernetes.default.svc.cluster.local. 5 IN A 10.96.0.1"]


def test_names_match_case_insensitively():
    r = ask("WEB.Shop.SVC.cluster.LOCAL")
    assert [rd.address for rrset in r.answer for rd in rrset] == ["10.96.0.20"]


def test_srv_for_named_ports_with_glue():
    r = ask("_http._tcp.web.shop.svc.cluster.local", "SRV")
    assert texts(r.answer) == [
        "_http._tcp.web.shop.svc.cluster.local. 5 IN SRV 0 100 80 web.shop.svc.cluster.local."]
    assert texts(r.additional) == ["web.shop.svc.cluster.local. 5 IN A 10.96.0.20"]
    assert texts(ask("_dns._udp.web.shop.svc.cluster.local", "SRV").answer)[0].endswith(
        "SRV 0 100 53 web.shop.svc.cluster.local.")
    # the protocol is part of the name; unnamed ports have no SRV
    assert ask("_dns._tcp.web.shop.svc.cluster.local", "SRV").rcode() == dns.rcode.NXDOMAIN


def test_headless_service_answers_ready_endpoint_addresses():
    r = ask("db.shop.svc.cluster.local")
    assert [rd.address for rrset in r.answer for rd in rrset] == ["10.244.1.5", "10.244.2.7"]
    assert texts(ask("db-0.db.shop.svc.cluster.local").answer) == [
        "db-0.db.shop.svc.cluster.local. 5 IN A 10.244.1.5"]
    assert texts(ask("10-244-2-7.db.shop.svc.cluster.local").answer) == [
        "10-244-2-7.db.shop.svc.cluster.local. 5 IN A 10.244.2.7"]
    srv = ask("_pg._tcp.db.shop.svc.cluster.local", "SRV")
    assert texts(srv.answer) == [
        "_pg._tcp.db.shop.svc.cluster.local. 5 IN SRV 0 50 5432 10-244-2-7.db.shop.svc.cluster.local.",
        "_pg._tcp.db.shop.svc.cluster.local. 5 IN SRV 0 50 5432 db-0.db.shop.svc.cluster.local."]
    assert len(srv.additional) == 2


def test_headless_service_without_ready_endpoints_is_nodata_not_nxdomain():
    r = ask("empty.shop.svc.cluster.local")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer
    assert texts(r.authority)[0].startswith("cluster.local. 5 IN SOA")


def test_external_name_is_a_cname_that_is_not_followed():
    r = ask("ext.shop.svc.cluster.local")
    assert texts(r.answer) == ["ext.shop.svc.cluster.local. 5 IN CNAME db.example.org."]


def test_unknown_names_in_the_zone_are_nxdomain_with_the_soa():
    for name in ("nope.shop.svc.cluster.local", "web.other.svc.cluster.local",
                 "web.shop.svc.cluster.local.shop.svc.cluster.local"):
        r = ask(name)
        assert r.rcode() == dns.rcode.NXDOMAIN, name
        assert r.flags & dns.flags.AA
        assert r.authority and r.authority[0].rdtype == dns.rdatatype.SOA


def test_existing_names_without_the_asked_type_are_nodata():
    r = ask("web.shop.svc.cluster.local", "AAAA")
    assert r.rcode() == dns.rcode.NOERROR and not r.answer and r.authority
    # names above services exist too (resolvers walk search paths through them)
    assert ask("shop.svc.cluster.local").rcode() == dns.rcode.NOERROR


def test_zone_apex_has_soa_and_ns():
    assert texts(ask("cluster.local", "SOA").answer)[0].startswith(
        "cluster.local. 5 IN SOA ns.dns.cluster.local. hostmaster.cluster.local.")
    assert texts(ask("cluster.local", "NS").answer) == [
        "cluster.local. 5 IN NS ns.dns.cluster.local."]


def test_names_outside_the_zone_are_refused_never_forwarded():
    for name in ("example.org", "local", "1.0.96.10.in-addr.arpa"):
        r = ask(name)
        assert r.rcode() == dns.rcode.REFUSED, name
        assert not r.answer and not r.flags & dns.flags.AA


def test_other_domain_and_ttl():
    zone = build_zone(SERVICES, ENDPOINTS, "lab.example", ttl=30)
    assert texts(ask("web.shop.svc.lab.example", zone=zone).answer) == [
        "web.shop.svc.lab.example. 30 IN A 10.96.0.20"]
    assert ask("web.shop.svc.cluster.local", zone=zone).rcode() == dns.rcode.REFUSED


def test_non_query_opcode_is_not_implemented():
    query = dns.message.make_query("web.shop.svc.cluster.local", "A")
    query.set_opcode(dns.opcode.NOTIFY)
    assert answer(ZONE, query).rcode() == dns.rcode.NOTIMP


def test_big_udp_answers_are_truncated_so_the_client_retries_over_tcp():
    many = [{"metadata": {"name": "big", "namespace": "shop"}, "subsets": [{
        "addresses": [{"ip": f"10.244.{i // 200}.{i % 200 + 1}"} for i in range(120)],
        "ports": [{"name": "pg", "port": 5432}]}]}]
    zone = build_zone([{"metadata": {"name": "big", "namespace": "shop"},
                        "spec": {"clusterIP": "None"}}], many)
    query = dns.message.make_query("big.shop.svc.cluster.local", "A", use_edns=False)
    wire = to_wire(answer(zone, query), udp_limit(query))
    reply = dns.message.from_wire(wire)
    assert len(wire) <= 512 and reply.flags & dns.flags.TC and not reply.answer
    full = dns.message.from_wire(to_wire(answer(zone, query), 65535))
    assert len(full.answer[0]) == 120


def test_udp_limit_follows_edns():
    assert udp_limit(dns.message.make_query("a.", "A", use_edns=False)) == 512
    assert udp_limit(dns.message.make_query("a.", "A", use_edns=0, payload=4096)) == 1232
    assert udp_limit(dns.message.make_query("a.", "A", use_edns=0, payload=800)) == 800


def test_garbage_gets_formerr_or_is_dropped():
    assert handle(lambda: ZONE, b"\x12", None) is None
    reply = handle(lambda: ZONE, b"\x12\x34" + b"\x01\x00" + b"\x00\x01" + b"\x00" * 6
                   + b"\xff\xff", None)
    assert reply[:2] == b"\x12\x34" and reply[3] & 0x0F == dns.rcode.FORMERR
    response = dns.message.make_response(dns.message.make_query("a.cluster.local", "A"))
    assert handle(lambda: ZONE, response.to_wire(), None) is None  # never answer answers


# ------------------------------------------------------------------ registration edits


def test_registration_adds_and_removes_one_address_idempotently():
    empty = {"metadata": {"name": "kube-dns"}, "subsets": []}
    one = registration.with_address(empty, "10.0.0.21", 53)
    assert one["subsets"] == [{"addresses": [{"ip": "10.0.0.21"}],
                               "ports": registration.endpoint_ports(53)}]
    assert registration.with_address(one, "10.0.0.21", 53) is None
    two = registration.with_address(one, "10.0.0.22", 53)
    assert [a["ip"] for a in two["subsets"][0]["addresses"]] == ["10.0.0.21", "10.0.0.22"]
    other_port = registration.with_address(two, "10.0.0.23", 5353)
    assert len(other_port["subsets"]) == 2
    back = registration.without_address(two, "10.0.0.21", 53)
    assert [a["ip"] for a in back["subsets"][0]["addresses"]] == ["10.0.0.22"]
    assert registration.without_address(back, "10.0.0.21", 53) is None
    assert registration.without_address(back, "10.0.0.22", 53)["subsets"] == []


def test_kube_dns_service_shape():
    svc = registration.desired_service("10.96.0.10")
    assert svc["metadata"]["namespace"] == "kube-system"
    assert svc["metadata"]["labels"]["kubernetes.io/cluster-service"] == "true"
    assert "selector" not in svc["spec"]
    assert [(p["name"], p["port"], p["protocol"]) for p in svc["spec"]["ports"]] == [
        ("dns", 53, "UDP"), ("dns-tcp", 53, "TCP")]


def test_flags():
    args = parse_args(["--kubeconfig", "k", "--listen", "10.0.0.21:53",
                       "--register-endpoint-ip", "10.0.0.21"])
    assert args.listen == ("10.0.0.21", 53) and args.service_ip == "10.96.0.10"
    for bad in (["--listen", "10.0.0.21"], ["--listen", "host:53"],
                ["--register-endpoint-ip", "x"]):
        with pytest.raises(SystemExit):
            parse_args(["--kubeconfig", "k", *bad])
