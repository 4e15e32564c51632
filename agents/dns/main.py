"""The cluster DNS daemon: informers on Services and Endpoints, the zone rebuilt lazily
after a change, UDP + TCP servers, and the kube-dns Service/Endpoints registration.

Serving starts only once the caches are synced (an empty cache would answer NXDOMAIN for
names that exist); the address is listed in kube-dns's Endpoints only after that, and
removed on SIGTERM before exiting.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import logging
import sys
import time

from agents.kube.client import KubeClient
from agents.kube.informer import Informer
from agents.kube.kubeconfig import KubeconfigError
from agents.kube.resources import meta_namespace_key
from agents.kube.signals import cancel_on_stop_signals

from .records import DEFAULT_TTL, Zone, build_zone
from .registration import NAME, NAMESPACE, Registrar
from .server import DnsServer

log = logging.getLogger("agents.dns")


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    try:
        if not sep:
            raise ValueError("no port")
        ipaddress.IPv4Address(host)
        number = int(port)
        if not 0 <= number < 65536:
            raise ValueError("port out of range")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"--listen {value!r}: want IPV4:PORT, e.g. 10.0.0.21:53 ({exc})") from None
    return host, number


def _ip(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m agents.dns",
                                description="Authoritative DNS for the cluster domain.")
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--listen", type=_listen, default=("0.0.0.0", 53), metavar="ADDR:PORT")
    p.add_argument("--domain", default="cluster.local")
    p.add_argument("--ttl", type=int, default=DEFAULT_TTL)
    p.add_argument("--service-ip", type=_ip, default="10.96.0.10",
                   help="ClusterIP of the kube-system/kube-dns Service (created if missing)")
    p.add_argument("--register-endpoint-ip", type=_ip, default=None, metavar="IP",
                   help="list IP (with the --listen port) in kube-dns's Endpoints while "
                   "running; omit to serve without registering")
    return p.parse_args(argv)


class ZoneCache:
    """The zone, rebuilt on first use after a change."""

    def __init__(self, services: Informer, endpoints: Informer, domain: str, ttl: int):
        self.services, self.endpoints, self.domain, self.ttl = services, endpoints, domain, ttl
        self._zone: Zone | None = None
        self.builds = 0

    def invalidate(self, *_args) -> None:
        self._zone = None

    def current(self) -> Zone:
        if self._zone is None:
            self.builds += 1
            self._zone = build_zone(self.services.store.list(), self.endpoints.store.list(),
                                    self.domain, self.ttl, serial=int(time.time()))
        return self._zone


class DnsAgent:
    def __init__(self, api, args):
        self.args = args
        self.services = Informer(api, "services")
        self.endpoints = Informer(api, "endpoints")
        self.zone = ZoneCache(self.services, self.endpoints, args.domain, args.ttl)
        host, port = args.listen
        self.server = DnsServer(self.zone.current, host, port)
        self.registrar = Registrar(api, args.service_ip, args.register_endpoint_ip, port)
        self._register = asyncio.Event()
        for informer in (self.services, self.endpoints):
            informer.add_handler(on_add=self.zone.invalidate,
                                 on_update=self.zone.invalidate,
                                 on_delete=self.zone.invalidate)
        self.endpoints.add_handler(on_add=self._check_listed,
                                   on_update=lambda _old, new: self._check_listed(new),
                                   on_delete=self._check_listed)

    def _check_listed(self, endpoints: dict) -> None:
        if meta_namespace_key(endpoints) != f"{NAMESPACE}/{NAME}":
            return
        current = self.endpoints.store.get_by_name(NAMESPACE, NAME)
        if not self.registrar.listed_in(current):
            self._register.set()

    async def _keep_registered(self) -> None:
        delay = 0.5
        while True:
            self._register.clear()
            try:
                await self.registrar.register()
                delay = 0.5
            except Exception as exc:  # noqa: BLE001 - the API may be away for a while
                log.warning("registering in %s/%s failed: %s; retrying in %.1fs",
                            NAMESPACE, NAME, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            await self._register.wait()

    async def run(self) -> None:
        tasks = [asyncio.create_task(inf.run()) for inf in (self.services, self.endpoints)]
        try:
            await asyncio.gather(self.services.wait_for_sync(),
                                 self.endpoints.wait_for_sync())
            await self.server.start()
            tasks.append(asyncio.create_task(self._keep_registered()))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.server.stop()

    async def deregister(self) -> None:
        try:
            await asyncio.wait_for(self.registrar.deregister(), 5.0)
        except Exception as exc:  # noqa: BLE001 - exiting anyway
            log.warning("could not remove our address from %s/%s: %s", NAMESPACE, NAME, exc)


async def run(args) -> int:
    async with KubeClient.from_kubeconfig(args.kubeconfig, user_agent="labctl-dns") as api:
        agent = DnsAgent(api, args)
        main_task = cancel_on_stop_signals(asyncio.create_task(agent.run()))
        try:
            with contextlib.suppress(asyncio.CancelledError):
                await main_task
        finally:
            await agent.deregister()
    log.info("stopped")
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        return asyncio.run(run(args))
    except KubeconfigError as exc:
        print(f"dns: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"dns: cannot serve on {args.listen[0]}:{args.listen[1]}: {exc}",
              file=sys.stderr)
        return 1
