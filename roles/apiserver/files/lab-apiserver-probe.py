#!/usr/bin/env python3
"""One HTTPS GET to the lab's API server, verified against the lab CA; JSON on stdout.

    lab-apiserver-probe.py --server https://10.0.0.2:6443 --cacert ca.crt /readyz
    lab-apiserver-probe.py --server URL --cacert ca.crt --cert admin.crt --key admin.key \
        /api/v1/namespaces

Prints {"status": <HTTP status>, "body": <parsed JSON, or text>} and exits 0 on 200,
1 on any other status; on a connection or TLS failure prints {"error": "..."} and
exits 2. Standard library only: it runs on hosts that have just python3.
"""

import argparse
import http.client
import json
import ssl
import sys
from urllib.parse import urlsplit


def parse_args(argv):
    p = argparse.ArgumentParser(prog="lab-apiserver-probe.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True, help="https://HOST:PORT")
    p.add_argument("--cacert", required=True, help="the CA that signed the serving certificate")
    p.add_argument("--cert", help="client certificate (omit: an anonymous request)")
    p.add_argument("--key", help="client key")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    p.add_argument("path", help="request path, e.g. /readyz")
    args = p.parse_args(argv)
    if bool(args.cert) != bool(args.key):
        p.error("--cert and --key go together")
    return args


def get(args):
    parts = urlsplit(args.server)
    ctx = ssl.create_default_context(cafile=args.cacert)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    conn = http.client.HTTPSConnection(parts.hostname, parts.port or 443, context=ctx,
                                       timeout=args.timeout)
    try:
        conn.request("GET", args.path, headers={"Accept": "application/json"})
        resp = conn.getresponse()
        raw = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        body = json.loads(raw)
    except ValueError:
        body = raw.strip()
    return resp.status, body


def main(argv=None):
    args = parse_args(argv)
    try:
        status, body = get(args)
    except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps({"status": status, "body": body}))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
