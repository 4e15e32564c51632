"""One DNS query, printed as JSON (hosts have no dig): used by the dns role's checks.

    python -m agents.dns.query --server 10.0.0.21 [--port 53] [--tcp] NAME [TYPE]

Prints {"rcode": "NOERROR", "answer": ["name. 5 IN A 10.96.0.1", ...]} and exits 0 when
an answer arrived (whatever its rcode), 2 on a timeout or network error.
"""

from __future__ import annotations

import argparse
import json
import sys

import dns.exception
import dns.message
import dns.query
import dns.rcode


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m agents.dns.query", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--tcp", action="store_true")
    p.add_argument("--timeout", type=float, default=3.0)
    p.add_argument("name")
    p.add_argument("type", nargs="?", default="A")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    query = dns.message.make_query(args.name, args.type)
    send = dns.query.tcp if args.tcp else dns.query.udp
    try:
        response = send(query, args.server, timeout=args.timeout, port=args.port)
    except (dns.exception.DNSException, OSError) as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        return 2
    print(json.dumps({"rcode": dns.rcode.to_text(response.rcode()),
                      "answer": [line for rrset in response.answer
                                 for line in rrset.to_text().splitlines()]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
