"""kube-proxy's pure core: the model computed from Services + Endpoints, the nftables and
iptables states derived from it, and the transactions planned between two states."""

from __future__ import annotations

import pytest

from agents.kube_proxy import iptables, nft
from agents.kube_proxy.model import Endpoint, NodeInfo, ServicePort, compute_model

pytestmark = pytest.mark.unit

NODE = NodeInfo("node-1")


def svc(name, ports, cluster_ip="10.96.0.20", type_="ClusterIP", ns="default"):
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"type": type_, "clusterIP": cluster_ip, "ports": ports}}


def eps(name, subsets, ns="default"):
    return {"metadata": {"name": name, "namespace": ns}, "subsets": subsets}


def subset(ips, ports, not_ready=()):
    out = {"addresses": [{"ip": ip} for ip in ips], "ports": ports}
    if not_ready:
        out["notReadyAddresses"] = [{"ip": ip} for ip in not_ready]
    return out


# Each case: services, endpoints → {key: (cluster_ip, node_port, endpoints)}
CASES = {
    "one service, two endpoints (not-ready ones left out)": (
        [svc("web", [{"port": 80, "targetPort": 8080}])],
        [eps("web", [subset(["10.244.1.3", "10.244.1.2"], [{"port": 8080}],
                            not_ready=["10.244.1.9"])])],
        {"default/web/tcp/80": ("10.96.0.20", 0, [("10.244.1.2", 8080),
                                                  ("10.244.1.3", 8080)])}),
    "no endpoints object at all": (
        [svc("web", [{"port": 80}])], [],
        {"default/web/tcp/80": ("10.96.0.20", 0, [])}),
    "endpoints with only not-ready addresses": (
        [svc("web", [{"port": 80}])],
        [eps("web", [subset([], [{"port": 80}], not_ready=["10.244.1.2"])])],
        {"default/web/tcp/80": ("10.96.0.20", 0, [])}),
    "NodePort": (
        [svc("np", [{"name": "http", "port": 80, "nodePort": 30080}], type_="NodePort")],
        [eps("np", [subset(["10.244.2.5"], [{"name": "http", "port": 8080}])])],
        {"default/np/tcp/80": ("10.96.0.20", 30080, [("10.244.2.5", 8080)])}),
    "named target ports resolve per pod (different numbers)": (
        [svc("named", [{"name": "web", "port": 80, "targetPort": "http"}])],
        [eps("named", [subset(["10.244.1.2"], [{"name": "web", "port": 8080}]),
                       subset(["10.244.2.2"], [{"name": "web", "port": 9090}])])],
        {"default/named/tcp/80": ("10.96.0.20", 0, [("10.244.1.2", 8080),
                                                    ("10.244.2.2", 9090)])}),
    "multiple ports, matched by name and protocol": (
        [svc("dns", [{"name": "dns", "port": 53, "protocol": "UDP"},
                     {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                     {"name": "metrics", "port": 9153}])],
        [eps("dns", [subset(["10.0.0.5", "10.0.0.6"], [
            {"name": "dns", "port": 5353, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 5353, "protocol": "TCP"}])])],
        {"default/dns/udp/53": ("10.96.0.20", 0, [("10.0.0.5", 5353), ("10.0.0.6", 5353)]),
         "default/dns/tcp/53": ("10.96.0.20", 0, [("10.0.0.5", 5353), ("10.0.0.6", 5353)]),
         "default/dns/tcp/9153": ("10.96.0.20", 0, [])}),
    "headless and ExternalName services are not proxied": (
        [svc("headless", [{"port": 80}], cluster_ip="None"),
         {"metadata": {"name": "ext", "namespace": "default"},
          "spec": {"type": "ExternalName", "externalName": "example.org"}}],
        [eps("headless", [subset(["10.244.1.2"], [{"port": 80}])])], {}),
    "same name in two namespaces": (
        [svc("web", [{"port": 80}], "10.96.0.20", ns="a"),
         svc("web", [{"port": 80}], "10.96.0.21", ns="b")],
        [eps("web", [subset(["10.244.1.2"], [{"port": 80}])], ns="b")],
        {"a/web/tcp/80": ("10.96.0.20", 0, []),
         "b/web/tcp/80": ("10.96.0.21", 0, [("10.244.1.2", 80)])}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_model_cases(case):
    services, endpoints, expected = CASES[case]
    model = compute_model(services, endpoints, NODE)
    got = {key: (sp.cluster_ip, sp.node_port, [(e.ip, e.port) for e in sp.endpoints])
           for key, sp in model.service_ports.items()}
    assert got == expected
    assert not model.problems


def test_malformed_objects_are_reported_and_skipped_not_fatal():
    model = compute_model([svc("v6", [{"port": 80}], cluster_ip="fd00::1"),
                           svc("badport", [{"port": "http"}, {"port": 81}]),
                           svc("badproto", [{"port": 80, "protocol": "ICMP"}])], [], NODE)
    assert list(model.service_ports) == ["default/badport/tcp/81"]
    assert len(model.problems) == 3
    assert any("v6" in p and "IPv4" in p for p in model.problems)


def sp(key="web", endpoints=(("10.244.1.2", 8080), ("10.244.1.3", 8080)), node_port=0,
       protocol="tcp", cluster_ip="10.96.0.20"):
    return ServicePort("default", key, "http", protocol, cluster_ip, 80, node_port,
                       tuple(Endpoint(ip, p) for ip, p in endpoints))


def model_of(*ports, cidrs=()):
    return compute_model([], [], NodeInfo("n", cidrs)).__class__(
        {p.key: p for p in ports}, tuple(cidrs))


# ------------------------------------------------------------------ nftables


def test_nft_two_endpoints_spread_with_numgen_and_dnat_per_endpoint():
    state = nft.desired_state(model_of(sp()))
    assert state.chains["svc-default/web/tcp/80"] == (
        "numgen random mod 2 vmap { 0 : goto ep-default/web/tcp/80__10.244.1.2/8080, "
        "1 : goto ep-default/web/tcp/80__10.244.1.3/8080 }",)
    assert state.chains["ep-default/web/tcp/80__10.244.1.2/8080"] == (
        "ip saddr 10.244.1.2 meta mark set meta mark | 0x4000",  # hairpin
        "meta l4proto tcp dnat to 10.244.1.2:8080")
    assert state.elements["service-ips"] == {
        "10.96.0.20 . tcp . 80": "goto svc-default/web/tcp/80"}
    assert state.elements["no-endpoint-services"] == {}


def test_nft_single_endpoint_is_a_plain_goto():
    state = nft.desired_state(model_of(sp(endpoints=[("10.244.1.2", 80)])))
    assert state.chains["svc-default/web/tcp/80"] == (
        "goto ep-default/web/tcp/80__10.244.1.2/80",)


def test_nft_no_endpoints_means_reject_sets_and_no_chains():
    state = nft.desired_state(model_of(sp(endpoints=[], node_port=30080, protocol="udp")))
    assert state.chains == {}
    assert state.elements["no-endpoint-services"] == {"10.96.0.20 . udp . 80": None}
    assert state.elements["no-endpoint-nodeports"] == {"udp . 30080": None}
    assert state.elements["service-ips"] == {} and state.elements["service-nodeports"] == {}


def test_nft_node_port_is_masqueraded_then_load_balanced():
    state = nft.desired_state(model_of(sp(node_port=30080)))
    assert state.chains["ext-default/web/tcp/80"] == (
        "meta mark set meta mark | 0x4000", "goto svc-default/web/tcp/80")
    assert state.elements["service-nodeports"] == {
        "tcp . 30080": "goto ext-default/web/tcp/80"}


def test_nft_full_sync_replaces_the_table_atomically():
    text = nft.render_changes(None, nft.desired_state(model_of(sp())))
    lines = text.splitlines()
    assert lines[:2] == ["add table ip lab-proxy", "delete table ip lab-proxy"]
    assert "table ip lab-proxy {" in lines
    for hook in ("hook prerouting", "hook output priority -100", "hook postrouting",
                 "hook input", "hook forward"):
        assert hook in text
    assert "fib daddr type local ip daddr != 127.0.0.0/8" in text
    assert lines[-1].startswith("add element ip lab-proxy service-ips")


def test_nft_nodeport_addresses_become_an_interval_set():
    text = nft.render_changes(None, nft.desired_state(model_of(sp(), cidrs=(
        "10.0.0.0/24", "192.168.1.0/24"))))
    assert "elements = { 10.0.0.0/24, 192.168.1.0/24 }" in text
    assert "fib daddr type local ip daddr @nodeport-addresses" in text


def test_nft_unchanged_model_plans_nothing():
    state = nft.desired_state(model_of(sp(), sp("other")))
    assert nft.render_changes(state, nft.desired_state(model_of(sp(), sp("other")))) == ""


def test_nft_removing_an_endpoint_touches_only_that_service():
    old = nft.desired_state(model_of(sp(), sp("other")))
    new = nft.desired_state(model_of(sp(endpoints=[("10.244.1.2", 8080)]), sp("other")))
    assert nft.render_changes(old, new).splitlines() == [
        "flush chain ip lab-proxy svc-default/web/tcp/80",
        "add rule ip lab-proxy svc-default/web/tcp/80 goto "
        "ep-default/web/tcp/80__10.244.1.2/8080",
        "flush chain ip lab-proxy ep-default/web/tcp/80__10.244.1.3/8080",
        "delete chain ip lab-proxy ep-default/web/tcp/80__10.244.1.3/8080"]


def test_nft_last_endpoint_gone_switches_to_reject_in_one_transaction():
    old = nft.desired_state(model_of(sp(endpoints=[("10.244.1.2", 8080)])))
    new = nft.desired_state(model_of(sp(endpoints=[])))
    lines = nft.render_changes(old, new).splitlines()
    assert lines == [
        "delete element ip lab-proxy service-ips { 10.96.0.20 . tcp . 80 }",
        "add element ip lab-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 }",
        "flush chain ip lab-proxy ep-default/web/tcp/80__10.244.1.2/8080",
        "flush chain ip lab-proxy svc-default/web/tcp/80",
        "delete chain ip lab-proxy ep-default/web/tcp/80__10.244.1.2/8080",
        "delete chain ip lab-proxy svc-default/web/tcp/80"]


def test_nft_new_service_adds_chains_before_referring_to_them():
    old = nft.desired_state(model_of())
    lines = nft.render_changes(old, nft.desired_state(model_of(sp(node_port=30080))))
    lines = lines.splitlines()
    first_element = next(i for i, line in enumerate(lines) if "element" in line)
    last_chain = max(i for i, line in enumerate(lines) if line.startswith("add chain"))
    assert last_chain < first_element
    assert not any(line.startswith(("flush", "delete")) for line in lines)


def test_nft_changed_cluster_ip_swaps_the_map_element():
    old = nft.desired_state(model_of(sp()))
    new = nft.desired_state(model_of(sp(cluster_ip="10.96.0.99")))
    assert nft.render_changes(old, new).splitlines() == [
        "delete element ip lab-proxy service-ips { 10.96.0.20 . tcp . 80 }",
        "add element ip lab-proxy service-ips { 10.96.0.99 . tcp . 80 : "
        "goto svc-default/web/tcp/80 }"]


# ------------------------------------------------------------------ iptables


def test_iptables_same_model_as_chains_with_probabilities():
    state = iptables.desired_state(model_of(sp(endpoints=[
        ("10.244.1.2", 80), ("10.244.1.3", 80), ("10.244.1.4", 80)], node_port=30080)))
    port = sp()
    svc_rules = state.chains[("nat", iptables.svc_chain(port))]
    assert [r.split("-j ")[0].split("--probability ")[-1].strip() for r in svc_rules] == [
        "0.3333333333", "0.5000000000", '-m comment --comment "default/web/tcp/80"']
    sep = iptables.sep_chain(port, "10.244.1.2", 80)
    assert state.chains[("nat", sep)][1].endswith("-j DNAT --to-destination 10.244.1.2:80")
    services = state.chains[("nat", iptables.SERVICES)]
    assert services[0].startswith("-d 10.96.0.20/32 -p tcp -m tcp --dport 80")
    assert services[-1] == "! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j LAB-NODEPORTS"
    assert state.chains[("nat", iptables.NODEPORTS)] == (
        f'-p tcp -m tcp --dport 30080 -m comment --comment "default/web/tcp/80" '
        f"-j {iptables.ext_chain(port)}",)
    assert all(len(chain) <= 28 for _, chain in state.chains)


def test_iptables_no_endpoints_rejects_in_the_filter_table():
    state = iptables.desired_state(model_of(sp(endpoints=[], protocol="udp"),
                                            sp("t", endpoints=[])))
    udp, tcp = state.chains[("filter", iptables.REJECTS)]
    assert "-p tcp" in tcp and tcp.endswith("-j REJECT --reject-with tcp-reset")
    assert "-p udp" in udp and udp.endswith("-j REJECT")


def test_iptables_diff_declares_only_changed_chains_and_deletes_stale_ones():
    old = iptables.desired_state(model_of(sp(), sp("other")))
    new = iptables.desired_state(model_of(sp(endpoints=[("10.244.1.2", 8080)]), sp("other")))
    text = iptables.render_changes(old, new)
    gone = iptables.sep_chain(sp(), "10.244.1.3", 8080)
    declared = [line[1:].split()[0] for line in text.splitlines() if line.startswith(":")]
    assert declared == [iptables.svc_chain(sp()), gone]
    assert f"-X {gone}" in text.splitlines()
    assert "*filter" not in text
    assert iptables.render_changes(new, new) == ""


def test_iptables_existing_chains_are_rewritten_or_deleted_on_the_first_sync():
    save = ("*nat\n:PREROUTING ACCEPT [0:0]\n:LAB-SERVICES - [0:0]\n:LAB-SVC-OLD - [0:0]\n"
            "-A LAB-SVC-OLD -j ACCEPT\nCOMMIT\n*filter\n:LAB-REJECTS - [0:0]\nCOMMIT\n")
    existing = iptables.parse_existing(save)
    assert set(existing.chains) == {("nat", "LAB-SERVICES"), ("nat", "LAB-SVC-OLD"),
                                    ("filter", "LAB-REJECTS")}
    text = iptables.render_changes(existing, iptables.desired_state(model_of()))
    assert "-X LAB-SVC-OLD" in text and ":LAB-SERVICES - [0:0]" in text
    assert ":PREROUTING" not in text
