"""Runs the cluster smoke test (labctl.verify.smoke) against a deployed lab: the admin
client from the lab's PKI, commands over the lab's SSH pool, host power through the
provider."""

from __future__ import annotations

import asyncio
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
                      start_host: Callable[[str], None]) -> list[CheckResult]:
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
                               domain=domain, options=options)
            return await Smoke(ctx).run()

    return asyncio.run(main())
