"""Cluster DNS: authoritative answers for the cluster domain from a watch of Services and
Endpoints (records.py is the pure zone + resolver; server.py the UDP/TCP servers;
registration.py the kube-dns Service and Endpoints; query.py a one-shot query tool).
Needs dnspython for the wire format."""
