"""A small etcd v3 client for the lab's hosts (the image has no etcdctl).

Run with the lab's venv python (it has grpc and the agents' etcd API stubs):

    /opt/lab/venv/bin/python lab-etcdctl.py [--endpoints URL,...] [TLS flags] COMMAND

Commands print one JSON document and exit 0 on success, 1 on failure:

    health         Range of key "health" on every endpoint (etcdctl's endpoint health)
    status         Maintenance/Status of every endpoint: member id, leader, term, revision
    members        Cluster/MemberList from the first endpoint that answers
    put KEY VALUE  KV/Put to the first endpoint that answers
    get KEY        KV/Range (linearizable) on every endpoint: each one's value
"""

import argparse
import json
import sys
import time
from urllib.parse import urlsplit

import grpc

from agents.etcdapi import rpc_pb2, rpc_pb2_grpc

METADATA = (("client-api-version", "3.4"),)


def channel(endpoint, args):
    url = urlsplit(endpoint)
    target = url.netloc or endpoint
    if url.scheme != "https":
        return grpc.insecure_channel(target)
    with open(args.cacert, "rb") as ca, open(args.key, "rb") as key, open(args.cert, "rb") as crt:
        creds = grpc.ssl_channel_credentials(ca.read(), key.read(), crt.read())
    return grpc.secure_channel(target, creds)


def call(endpoint, args, stub_class, method, request):
    with channel(endpoint, args) as ch:
        stub = stub_class(ch)
        return getattr(stub, method)(request, timeout=args.timeout, metadata=METADATA)


def error_text(exc):
    if isinstance(exc, grpc.RpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


def each_endpoint(args, fn):
    """fn(endpoint) on every endpoint: [{"endpoint", ...fn's dict} or {"endpoint", "error"}]."""
    out = []
    for endpoint in args.endpoints:
        started = time.monotonic()
        try:
            row = {"endpoint": endpoint, **fn(endpoint)}
        except Exception as exc:  # one endpoint failing must not hide the others
            row = {"endpoint": endpoint, "error": error_text(exc)}
        row["took_ms"] = round((time.monotonic() - started) * 1000, 1)
        out.append(row)
    return out, all("error" not in row for row in out)


def first_answer(args, fn):
    errors = []
    for endpoint in args.endpoints:
        try:
            return {"endpoint": endpoint, **fn(endpoint)}, True
        except Exception as exc:
            errors.append({"endpoint": endpoint, "error": error_text(exc)})
    return {"errors": errors}, False


def cmd_health(args):
    def probe(endpoint):
        try:
            call(endpoint, args, rpc_pb2_grpc.KVStub, "Range", rpc_pb2.RangeRequest(key=b"health"))
        except grpc.RpcError as exc:  # etcdctl counts "permission denied" as healthy
            if exc.code() != grpc.StatusCode.PERMISSION_DENIED:
                raise
        return {"health": True}

    return each_endpoint(args, probe)


def cmd_status(args):
    def status(endpoint):
        r = call(endpoint, args, rpc_pb2_grpc.MaintenanceStub, "Status", rpc_pb2.StatusRequest())
        return {"member_id": f"{r.header.member_id:x}", "leader": f"{r.leader:x}",
                "is_leader": r.leader != 0 and r.leader == r.header.member_id,
                "raft_term": r.raftTerm, "raft_index": r.raftIndex,
                "revision": r.header.revision, "version": r.version}

    return each_endpoint(args, status)


def cmd_members(args):
    def members(endpoint):
        r = call(endpoint, args, rpc_pb2_grpc.ClusterStub, "MemberList", rpc_pb2.MemberListRequest())
        return {"members": [{"id": f"{m.ID:x}", "name": m.name, "peer_urls": list(m.peerURLs),
                             "client_urls": list(m.clientURLs), "is_learner": m.isLearner}
                            for m in r.members]}

    return first_answer(args, members)


def cmd_put(args):
    def put(endpoint):
        request = rpc_pb2.PutRequest(key=args.name.encode(), value=args.value.encode())
        r = call(endpoint, args, rpc_pb2_grpc.KVStub, "Put", request)
        return {"revision": r.header.revision}

    return first_answer(args, put)


def cmd_get(args):
    def get(endpoint):
        r = call(endpoint, args, rpc_pb2_grpc.KVStub, "Range", rpc_pb2.RangeRequest(key=args.name.encode()))
        value = r.kvs[0].value.decode("utf-8", "replace") if r.kvs else None
        return {"value": value, "revision": r.header.revision}

    return each_endpoint(args, get)


COMMANDS = {"health": cmd_health, "status": cmd_status, "members": cmd_members,
            "put": cmd_put, "get": cmd_get}


def parse(argv):
    p = argparse.ArgumentParser(prog="lab-etcdctl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--endpoints", default="https://127.0.0.1:2379",
                   type=lambda s: [e.strip() for e in s.split(",") if e.strip()])
    p.add_argument("--cacert", default="/etc/lab/pki/etcd/ca.crt")
    p.add_argument("--cert", default="/etc/lab/pki/etcd/healthcheck-client.crt")
    p.add_argument("--key", default="/etc/lab/pki/etcd/healthcheck-client.key")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per request")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("health", "status", "members"):
        sub.add_parser(name)
    put = sub.add_parser("put")
    put.add_argument("name", metavar="KEY")  # not "key": --key is the client's TLS key
    put.add_argument("value", metavar="VALUE")
    get = sub.add_parser("get")
    get.add_argument("name", metavar="KEY")
    return p.parse_args(argv)


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    try:
        result, ok = COMMANDS[args.command](args)
    except OSError as exc:  # unreadable certificate files
        result, ok = {"error": f"{type(exc).__name__}: {exc}"}, False
    print(json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
