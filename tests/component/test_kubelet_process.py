"""`python -m agents.kubelet --config FILE` as a process: it loads the config, serves
/healthz over TLS with the node certificate, registers the Node (NotReady while it has
no pod CIDR, so no runtime is built), keeps the Lease fresh, and exits 0 on SIGTERM.
Bad configs exit 2 with a message."""

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from agents.kubelet.testing import node_cert
from tests.component.test_kubelet_fake import cluster, wait_until  # noqa: F401

pytestmark = pytest.mark.component

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_kubelet_process_registers_serves_and_stops_on_sigterm(cluster, tmp_path):  # noqa: F811
    cert, key = node_cert(str(tmp_path), cluster.pki.ca,
                          os.path.join(cluster.work, "ca.key"), "proc1")
    port = free_port()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "kubeconfig": cluster.write_kubeconfig("node-proc1", cert, key),
        "node_name": "proc1", "node_ip": "127.0.0.1", "port": port,
        "tls_cert_file": cert, "tls_key_file": key, "client_ca_file": cluster.pki.ca,
        "state_dir": str(tmp_path / "state"), "pod_log_dir": str(tmp_path / "logs"),
        "lease_renew_seconds": 0.5}))
    with open(tmp_path / "kubelet.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "agents.kubelet", "--config",
                                 str(config)],
                                stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=ROOT)
    try:
        ctx = ssl.create_default_context(cafile=cluster.pki.ca)

        def healthy():
            try:
                with urllib.request.urlopen(f"https://127.0.0.1:{port}/healthz", context=ctx,
                                            timeout=1) as resp:
                    return resp.read() == b"ok"
            except OSError:
                return proc.poll() is not None
        wait_until(healthy, what="/healthz over TLS")
        assert proc.poll() is None, (tmp_path / "kubelet.log").read_text()
        node = wait_until(lambda: (lambda n: n if n and (n.get("status") or {}).get(
            "conditions") else None)(cluster.get("/api/v1/nodes/proc1")),
            what="node proc1 with its status")
        ready = {c["type"]: c for c in node["status"]["conditions"]}["Ready"]
        assert ready["status"] == "False" and "podCIDR" in ready["message"]
        lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/proc1"
        first = wait_until(lambda: cluster.get(lease), what="the lease")["spec"]["renewTime"]
        wait_until(lambda: cluster.get(lease)["spec"]["renewTime"] != first,
                   what="a lease renewal")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_bad_config_exits_2_with_the_reason(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("node_name: x\nwhat: 1\n")
    done = subprocess.run([sys.executable, "-m", "agents.kubelet", "--config", str(config)],
                          capture_output=True, text=True, cwd=ROOT, timeout=30)
    assert done.returncode == 2
    assert "unknown setting(s) what" in done.stderr


STUCK_IN_A_THREAD = """
import asyncio, time
from agents.kubelet.main import until_signalled

async def main():
    async def work():
        print("ready", flush=True)
        await asyncio.to_thread(time.sleep, 120)  # e.g. a container's stop, in its grace
    await until_signalled(work())

asyncio.run(main())
"""


def test_sigterm_exits_at_once_while_a_runtime_call_still_runs_in_a_thread():
    proc = subprocess.Popen([sys.executable, "-c", STUCK_IN_A_THREAD], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert time.monotonic() - started < 5
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
