"""Runs the cluster smoke test (labctl.verify.smoke) against a deployed lab: the admin
client from the lab's PKI, commands over the lab's SSH pool, host power through the
provider."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from labctl.verify.results import CheckResult
from labctl.verify.smoke import Smoke, SmokeContext, SmokeOptions

KUBELET_ROLE = "kubelet"  # a site that applies it has nodes to run the smoke test on


def admin_config(inventory: Any):
    """agents.kube KubeConfig for kubernetes-admin at the lab's API endpoint."""
    from agents.kube.kubeconfig import parse_kubeconfig
    from labctl.commands.kubeconfig import read_pki
    from labctl.kubeconfig import apiserver_endpoint, kubeconfig_document
    from labctl.state import LabState

    creds = read_pki(LabState.for_lab(inventory.lab_name).pki_dir, inventory.lab_name,
                     getattr(inventory, "path", "INVENTORY"))
    doc = kubeconfig_document(lab_name=inventory.lab_name, server=apiserver_endpoint(inventory),
                              **creds)
    return parse_kubeconfig(doc, where="the lab's admin kubeconfig")


def run_cluster_smoke(inventory: Any, pool: Any, options: SmokeOptions,
                      stop_host: Callable[[str], None],
                      start_host: Callable[[str], None],
                      before_disrupting: Callable[[], None] = lambda: None) -> list[CheckResult]:
    from agents.kube.client import KubeClient

    def run_on(host: str, command: str) -> tuple[int, str]:
        res = pool.get(host).run(command, timeout=20)
        return res.rc, res.stdout + res.stderr

    workers = inventory.group_hosts("workers")
    control_planes = inventory.group_hosts("control_plane")
    first = inventory.hosts[next(iter(inventory.hosts))]
    domain = str((first.vars or {}).get("lab_cluster_domain", "cluster.local"))

    async def main() -> list[CheckResult]:
        async with KubeClient(admin_config(inventory), user_agent="labctl-verify") as kube:
            ctx = SmokeContext(kube=kube, workers=workers, control_planes=control_planes,
                               run_on=run_on, stop_host=stop_host, start_host=start_host,
                               domain=domain, options=options, before_disrupting=before_disrupting)
            return await Smoke(ctx).run()

    return asyncio.run(main())


class VerifyAbandoned(Exception):
    """verify stopped (an error, Ctrl-C) before the smoke test's disruptive steps."""


class SmokeAlongside:
    """The smoke test in a thread, started while the roles' suites still run: its app is
    deployed and checked meanwhile; it stops hosts only after ``finish()`` (the suites
    are done). ``abandon()`` lets it end without stopping anything.

    ``run(before_disrupting)`` runs the smoke test, calling ``before_disrupting()``
    before it stops a host.
    """

    def __init__(self, run: Callable[[Callable[[], None]], list[CheckResult]]) -> None:
        self._run = run
        self._may_disrupt = threading.Event()
        self._abandoned = False
        self._results: list[CheckResult] = []
        self._error: BaseException | None = None
        # a daemon: an abandoned verify does not wait for the app's pods
        self._thread = threading.Thread(target=self._main, name="verify-smoke", daemon=True)

    def start(self) -> None:
        """Start it (once; the suites' check processes are forked before, so none
        inherits this thread's state)."""
        if not self._thread.is_alive() and self._thread.ident is None:
            self._thread.start()

    def _before_disrupting(self) -> None:
        self._may_disrupt.wait()
        if self._abandoned:
            raise VerifyAbandoned("verify stopped before the smoke test could stop hosts")

    def _main(self) -> None:
        try:
            self._results = self._run(self._before_disrupting)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by finish()
            self._error = exc

    def finish(self) -> list[CheckResult]:
        """Let it stop hosts now; its results when it is done."""
        self._may_disrupt.set()
        self.start()
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._results

    def abandon(self) -> None:
        self._abandoned = True
        self._may_disrupt.set()
