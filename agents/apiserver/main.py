"""Command line (kube-apiserver's flags for what we share) and process wiring."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import signal
import ssl
import sys

from aiohttp import web

from . import auth
from .compactor import compact_forever, parse_duration
from .informer import Informer
from .proxy import KubeletProxy
from .registry import Registry
from .resources import RESOURCES
from .server import Server
from .storage import EtcdStorage
from .watchcache import WatchCache

log = logging.getLogger("apiserver")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.apiserver",
                                description="Kubernetes-compatible API server over etcd v3")
    p.add_argument("--etcd-servers", required=True,
                   help="comma-separated etcd client URLs, e.g. https://10.0.0.2:2379")
    p.add_argument("--etcd-cafile")
    p.add_argument("--etcd-certfile")
    p.add_argument("--etcd-keyfile")
    p.add_argument("--bind-address", default="0.0.0.0")
    p.add_argument("--secure-port", type=int, default=6443)
    p.add_argument("--tls-cert-file")
    p.add_argument("--tls-private-key-file")
    p.add_argument("--client-ca-file")
    p.add_argument("--token-auth-file")
    p.add_argument("--service-cluster-ip-range", default="10.96.0.0/12")
    p.add_argument("--service-node-port-range", default="30000-32767")
    p.add_argument("--advertise-address", default=None)
    p.add_argument("--insecure-port", type=int, default=0,
                   help="also serve plain HTTP on 127.0.0.1:PORT with no authentication "
                        "(local tests only); 0 = off")
    p.add_argument("--default-watch-cache-size", type=int, default=1000,
                   help="changes kept in memory per resource for watches that resume")
    p.add_argument("--etcd-compaction-interval", default="5m0s",
                   help="compact etcd history this often (Go duration; 0 disables)")
    p.add_argument("--v", type=int, default=2, help="log verbosity; 4 or more logs every write")
    p.add_argument("--kubelet-client-certificate")
    p.add_argument("--kubelet-client-key")
    p.add_argument("--kubelet-certificate-authority")
    p.add_argument("--kubelet-https", default="true", choices=["true", "false"],
                   help="reach kubelets over https (false: plain http, for stand-ins)")
    args = p.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        p.error("--tls-cert-file and --tls-private-key-file go together")
    try:
        ipaddress.ip_network(args.service_cluster_ip_range, strict=False)
        low, high = (int(x) for x in args.service_node_port_range.split("-"))
    except ValueError as exc:
        p.error(f"bad range: {exc}")
    args.node_ports = (low, high)
    try:
        args.compaction_interval = parse_duration(args.etcd_compaction_interval)
    except ValueError as exc:
        p.error(f"--etcd-compaction-interval: {exc}")
    if not args.tls_cert_file and not args.insecure_port:
        p.error("nothing to serve: give --tls-cert-file/--tls-private-key-file and/or "
                "--insecure-port")
    return args


def server_ssl_context(args) -> ssl.SSLContext | None:
    if not args.tls_cert_file:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.tls_cert_file, args.tls_private_key_file)
    if args.client_ca_file:
        ctx.load_verify_locations(args.client_ca_file)
        ctx.verify_mode = ssl.CERT_OPTIONAL  # certificates or tokens, both accepted
    return ctx


async def bootstrap(registry: Registry, first_service_ip: str, advertise: str,
                    port: int) -> None:
    """The namespaces and the `kubernetes` service every cluster has."""
    for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
        await registry.ensure("v1", "Namespace", {"metadata": {"name": ns}})
    await registry.ensure("v1", "Service", {"metadata": {
        "name": "kubernetes", "namespace": "default",
        "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {"clusterIP": first_service_ip, "ports": [
            {"name": "https", "port": 443, "protocol": "TCP", "targetPort": port}]}})
    await registry.ensure("v1", "Endpoints", {"metadata": {
        "name": "kubernetes", "namespace": "default"}, "subsets": [{
            "addresses": [{"ip": advertise}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}]})


async def run(args) -> None:
    storage = EtcdStorage(args.etcd_servers.split(","), args.etcd_cafile, args.etcd_certfile,
                          args.etcd_keyfile)
    registry = Registry(storage, args.service_cluster_ip_range, args.node_ports)
    caches = {rt.plural: WatchCache(storage, rt.prefix(), args.default_watch_cache_size)
              for rt in RESOURCES if rt.stored}
    for cache in caches.values():
        await cache.start()
    registry.watch_caches = caches
    registry.namespaces = Informer(storage, caches["namespaces"], "/registry/namespaces/")
    await registry.namespaces.start()
    advertise = args.advertise_address or (
        args.bind_address if args.bind_address not in ("0.0.0.0", "::") else "127.0.0.1")
    bootstrapped = asyncio.Event()

    async def bootstrap_until_done():
        delay = 0.2
        while True:
            try:
                await bootstrap(registry, registry.ips.first(), advertise, args.secure_port)
                bootstrapped.set()
                log.info("bootstrap done: system namespaces and the kubernetes service exist")
                return
            except Exception as exc:  # etcd not reachable yet: a daemon waits for it
                log.warning("bootstrap failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    bootstrapping = asyncio.create_task(bootstrap_until_done())
    compacting = (asyncio.create_task(compact_forever(storage, args.compaction_interval))
                  if args.compaction_interval > 0 else None)
    tokens = auth.load_token_file(args.token_auth_file) if args.token_auth_file else {}
    proxy = KubeletProxy(args.kubelet_client_certificate, args.kubelet_client_key,
                         args.kubelet_certificate_authority, args.kubelet_https == "true")
    server = Server(registry, caches, tokens, proxy,
                    ready=lambda: bootstrapped.is_set() and all(
                        c.ready.is_set() for c in caches.values()),
                    advertise=f"{advertise}:{args.secure_port}")
    runner = web.AppRunner(server.app(), access_log=None, handler_cancellation=True)
    await runner.setup()
    if args.insecure_port:
        await web.TCPSite(runner, "127.0.0.1", args.insecure_port).start()
        log.info("serving plain HTTP on 127.0.0.1:%d", args.insecure_port)
    ctx = server_ssl_context(args)
    if ctx:
        await web.TCPSite(runner, args.bind_address, args.secure_port, ssl_context=ctx).start()
        log.info("serving HTTPS on %s:%d", args.bind_address, args.secure_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    bootstrapping.cancel()
    if compacting:
        compacting.cancel()
    await runner.cleanup()
    await registry.namespaces.stop()
    for cache in caches.values():
        await cache.stop()
    await proxy.close()
    await storage.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.v >= 4 else logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(run(args))
    return 0
