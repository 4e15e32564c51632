"""The pure core of cluster DNS: the zone built from Services + Endpoints, and the answer
to one query (dnspython messages in and out, no sockets).

Names served (zone = --domain, "cluster.local" by default), per the Kubernetes DNS spec:

    <svc>.<ns>.svc.<zone>                 A      the ClusterIP; for a headless service
                                                 (clusterIP None) every ready endpoint
    <host>.<svc>.<ns>.svc.<zone>          A      headless: each ready endpoint, <host> its
                                                 hostname or its address with dashes
    _<port>._<proto>.<svc>.<ns>.svc.<zone> SRV   named ports: ClusterIP → one record to the
                                                 service name; headless → one per endpoint
    <svc>.<ns>.svc.<zone>                 CNAME  ExternalName services (not followed)
    <zone>                                SOA, NS

A name under the zone with no records but with names below it (e.g. `<ns>.svc.<zone>`)
answers NOERROR with no data; other names under the zone are NXDOMAIN; names outside it
are REFUSED (nothing is forwarded). Answers are authoritative; negative ones carry the
SOA so resolvers cache them briefly.
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

DEFAULT_TTL = 5  # short: services change, and a stale answer outlives a deleted pod


@dataclass
class Zone:
    origin: dns.name.Name
    ttl: int = DEFAULT_TTL
    # name → type → rdatas
    records: dict[dns.name.Name, dict[int, list]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # every name that has records, and every name between them and the origin
    existing: set[dns.name.Name] = field(default_factory=set)

    def add(self, name: dns.name.Name, rdtype: int, text: str) -> None:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        if rdata not in self.records[name][rdtype]:
            self.records[name][rdtype].append(rdata)
        self.mark_exists(name)

    def mark_exists(self, name: dns.name.Name) -> None:
        """`name` and every name between it and the origin exist (answer NODATA, not
        NXDOMAIN, when they have no records of the asked type)."""
        while name != self.origin and name not in self.existing:
            self.existing.add(name)
            name = name.parent()
        self.existing.add(self.origin)


def _ipv4(value) -> str | None:
    try:
        return str(ipaddress.IPv4Address(value))
    except (ipaddress.AddressValueError, ValueError, TypeError):
        return None


def _label(text: str) -> str | None:
    """A DNS label from an object name (None if it cannot be one)."""
    try:
        dns.name.Name([text.encode()])
    except (dns.name.LabelTooLong, dns.name.EmptyLabel, UnicodeError):
        return None
    return text if text and "." not in text else None


def _ready_addresses(endpoints: dict | None) -> list[tuple[str, str, list[dict]]]:
    """(ip, host label, ports) of each ready address, in a stable order."""
    out = []
    for subset in (endpoints or {}).get("subsets") or []:
        ports = subset.get("ports") or []
        for address in subset.get("addresses") or []:
            ip = _ipv4(address.get("ip"))
            if ip:
                host = _label(address.get("hostname") or "") or ip.replace(".", "-")
                out.append((ip, host, ports))
    return sorted(out, key=lambda a: (ipaddress.IPv4Address(a[0]), a[1]))


def build_zone(services, endpoints, domain: str = "cluster.local",
               ttl: int = DEFAULT_TTL, serial: int = 1) -> Zone:
    """Pure: the whole zone from the informers' Services and Endpoints."""
    origin = dns.name.from_text(domain)
    zone = Zone(origin, ttl)
    ns_name = dns.name.from_text("ns.dns", origin)
    zone.add(origin, dns.rdatatype.SOA,
             f"{ns_name} hostmaster.{origin} {serial} 60 60 86400 {ttl}")
    zone.add(origin, dns.rdatatype.NS, str(ns_name))
    by_key = {((e.get("metadata") or {}).get("namespace"), (e.get("metadata") or {})
               .get("name")): e for e in endpoints}
    for svc in services:
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        name, ns = _label(meta.get("name") or ""), _label(meta.get("namespace") or "")
        if not name or not ns:
            continue
        base = dns.name.from_text(f"{name}.{ns}.svc", origin)
        if spec.get("type") == "ExternalName":
            if spec.get("externalName"):
                zone.add(base, dns.rdatatype.CNAME, spec["externalName"].rstrip(".") + ".")
            continue
        cluster_ip = spec.get("clusterIP")
        if cluster_ip == "None":
            _add_headless(zone, base, spec, by_key.get((meta.get("namespace"),
                                                        meta.get("name"))))
        elif _ipv4(cluster_ip):
            zone.add(base, dns.rdatatype.A, _ipv4(cluster_ip))
            for port in spec.get("ports") or []:
                label = _label(port.get("name") or "")
                if label and port.get("port"):
                    proto = (port.get("protocol") or "TCP").lower()
                    srv = dns.name.from_text(f"_{label}._{proto}", base)
                    zone.add(srv, dns.rdatatype.SRV, f"0 100 {int(port['port'])} {base}")
    return zone


def _add_headless(zone: Zone, base: dns.name.Name, spec: dict, endpoints: dict | None):
    addresses = _ready_addresses(endpoints)
    for ip, host, _ in addresses:
        zone.add(base, dns.rdatatype.A, ip)
        zone.add(dns.name.from_text(host, base), dns.rdatatype.A, ip)
    if not addresses:
        zone.mark_exists(base)  # the service exists: NODATA, not NXDOMAIN
    for port in spec.get("ports") or []:
        label = _label(port.get("name") or "")
        if not label:
            continue
        proto = (port.get("protocol") or "TCP").upper()
        targets = [(host, p["port"]) for _, host, ports in addresses for p in ports
                   if (p.get("name") or "") == port.get("name")
                   and (p.get("protocol") or "TCP").upper() == proto and p.get("port")]
        weight = max(1, 100 // len(targets)) if targets else 0
        srv = dns.name.from_text(f"_{label}._{proto.lower()}", base)
        for host, number in targets:
            zone.add(srv, dns.rdatatype.SRV,
                     f"0 {weight} {int(number)} {dns.name.from_text(host, base)}")


def _rrset(name: dns.name.Name, rdtype: int, rdatas, ttl: int) -> dns.rrset.RRset:
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
    for rdata in rdatas:
        rrset.add(rdata, ttl)
    return rrset


def answer(zone: Zone, query: dns.message.Message,
           our_payload: int = 1232) -> dns.message.Message:
    """Pure: the response to one query."""
    response = dns.message.make_response(query, our_payload=our_payload)
    response.flags &= ~dns.flags.RA  # nothing is resolved recursively here
    if query.opcode() != dns.opcode.QUERY:
        response.set_rcode(dns.rcode.NOTIMP)
        return response
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response
    question = query.question[0]
    qname, qtype = question.name, question.rdtype
    if question.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY) or \
            not qname.is_subdomain(zone.origin):
        response.set_rcode(dns.rcode.REFUSED)
        return response
    response.flags |= dns.flags.AA
    types = zone.records.get(qname, {})
    if qname not in zone.existing:
        response.set_rcode(dns.rcode.NXDOMAIN)
    elif dns.rdatatype.CNAME in types and qtype != dns.rdatatype.CNAME:
        response.answer.append(_rrset(qname, dns.rdatatype.CNAME,
                                      types[dns.rdatatype.CNAME], zone.ttl))
    else:
        wanted = list(types) if qtype == dns.rdatatype.ANY else [qtype]
        for rdtype in wanted:
            if types.get(rdtype):
                response.answer.append(_rrset(qname, rdtype, types[rdtype], zone.ttl))
    if not response.answer:
        soa = zone.records[zone.origin][dns.rdatatype.SOA]
        response.authority.append(_rrset(zone.origin, dns.rdatatype.SOA, soa, zone.ttl))
    for rrset in list(response.answer):
        if rrset.rdtype == dns.rdatatype.SRV:
            for srv in rrset:
                glue = zone.records.get(srv.target, {}).get(dns.rdatatype.A)
                if glue and not response.get_rrset(response.additional, srv.target,
                                                    dns.rdataclass.IN, dns.rdatatype.A):
                    response.additional.append(_rrset(srv.target, dns.rdatatype.A, glue,
                                                      zone.ttl))
    return response


def to_wire(response: dns.message.Message, max_size: int) -> bytes:
    """The response's wire form within max_size; if too big, an empty truncated (TC)
    answer so the client retries over TCP."""
    try:
        return response.to_wire(max_size=max_size)
    except dns.exception.TooBig:
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=max_size)


def udp_limit(query: dns.message.Message, our_payload: int = 1232) -> int:
    """How big a UDP answer may be: 512 without EDNS, else the smaller payload size."""
    if query.edns < 0:
        return 512
    return max(512, min(query.payload, our_payload))
