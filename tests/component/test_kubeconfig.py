"""``labctl kubeconfig`` against a real API server: the agent on 127.0.0.1 over HTTPS with
certificates from the lab PKI (``labctl.pki``), storing in a real etcd 3.4; kubectl 1.32
reads the printed file. The apiserver role's probe tool (what its verify suite runs on
hosts) is checked against the same server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.apiserver import testing
from labctl.inventory import load_inventory
from labctl.kubeconfig import render_kubeconfig
from labctl.pki_for_lab import ensure_lab_pki
from labctl.state import LabState
from tests.conftest import need

pytestmark = pytest.mark.component

KUBECTL = "/usr/bin/kubectl"
REPO = Path(__file__).resolve().parents[2]
PROBE = REPO / "roles" / "apiserver" / "files" / "lab-apiserver-probe.py"

INVENTORY = """
all:
  vars: {lab_name: kcc, lab_network: 10.9.9.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.9.11}
    etcd:
      children:
        control_plane:
"""


class Lab:
    def __init__(self, work: Path, inventory: Path, pki, url: str):
        self.work, self.inventory, self.pki, self.url = work, inventory, pki, url
        self.env = dict(os.environ, LABCTL_HOME=str(work / "labctl-home"), HOME=str(work / "home"))

    def labctl(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "labctl", *args], env=self.env, cwd=REPO,
                              capture_output=True, text=True, timeout=60)

    def kubectl(self, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(self.work / "cache"),
             "--request-timeout", "20s", *args],
            capture_output=True, text=True, timeout=90,
            env={"HOME": str(self.work / "home"), "PATH": os.environ.get("PATH", "/usr/bin")})

    def probe(self, path: str, *extra: str) -> tuple[int, dict]:
        proc = subprocess.run(
            [sys.executable, str(PROBE), "--server", self.url, "--cacert", str(self.pki.ca_cert),
             *extra, path], capture_output=True, text=True, timeout=30)
        return proc.returncode, json.loads(proc.stdout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    need(os.path.exists(KUBECTL), "needs /usr/bin/kubectl")
    work = tmp_path_factory.mktemp("kubeconfig")
    (work / "home").mkdir()
    inventory = work / "lab.yml"
    inventory.write_text(textwrap.dedent(INVENTORY))
    home = work / "labctl-home"
    pki = ensure_lab_pki(load_inventory(inventory), LabState.for_lab("kcc", home))
    tls = ["--tls-cert-file", str(pki.cert("apiserver")),
           "--tls-private-key-file", str(pki.key("apiserver")),
           "--client-ca-file", str(pki.ca_cert)]
    with testing.run_etcd(str(work)) as etcd, testing.run_apiserver(
            str(work), etcd.endpoint, secure=True, extra_args=tls) as api:
        yield Lab(work, inventory, pki, api.secure_url)


def write_kubeconfig(lab: Lab, name: str, *args: str) -> Path:
    proc = lab.labctl("kubeconfig", "-i", str(lab.inventory), *args)
    assert proc.returncode == 0, proc.stderr
    path = lab.work / name
    path.write_text(proc.stdout)
    return path


def test_kubectl_lists_namespaces_with_the_printed_kubeconfig(lab):
    kubeconfig = write_kubeconfig(lab, "admin.kubeconfig", "--server", lab.url)
    got = lab.kubectl(kubeconfig, "get", "ns", "-o", "name")
    assert got.returncode == 0, got.stderr
    names = set(got.stdout.split())
    assert {"namespace/default", "namespace/kube-system"} <= names, got.stdout


def test_kubectl_writes_as_kubernetes_admin(lab):
    kubeconfig = write_kubeconfig(lab, "admin.kubeconfig", "--server", lab.url)
    created = lab.kubectl(kubeconfig, "create", "namespace", "kubeconfig-admin-check")
    assert created.returncode == 0, created.stderr
    got = lab.kubectl(kubeconfig, "get", "ns", "kubeconfig-admin-check", "-o", "name")
    assert got.stdout.strip() == "namespace/kubeconfig-admin-check", got.stderr


def test_kubectl_refuses_a_server_the_embedded_ca_did_not_sign(lab):
    """Another lab's kubeconfig (another CA) against this server: the TLS check fails."""
    other_inventory = load_inventory(lab.inventory)
    other = ensure_lab_pki(other_inventory, LabState.for_lab("kcc", lab.work / "other-home"))
    path = lab.work / "other-ca.kubeconfig"
    path.write_text(render_kubeconfig(
        lab_name="other", server=lab.url, ca_pem=other.ca_cert.read_bytes(),
        client_cert_pem=other.cert("admin").read_bytes(),
        client_key_pem=other.key("admin").read_bytes()))
    got = lab.kubectl(path, "get", "ns")
    assert got.returncode != 0
    assert "certificate" in got.stderr, got.stderr


def test_probe_readyz_over_https_with_the_lab_ca(lab):
    rc, answer = lab.probe("/readyz")
    assert (rc, answer["status"]) == (0, 200), answer


def test_probe_as_admin_lists_system_namespaces(lab):
    rc, answer = lab.probe("/api/v1/namespaces", "--cert", str(lab.pki.cert("admin")),
                           "--key", str(lab.pki.key("admin")))
    assert rc == 0, answer
    names = {item["metadata"]["name"] for item in answer["body"]["items"]}
    assert {"default", "kube-system"} <= names


def test_probe_anonymous_resource_request_is_refused(lab):
    rc, answer = lab.probe("/api/v1/namespaces/kube-system/secrets")
    assert rc == 1 and answer["status"] in (401, 403), answer


def test_probe_reports_a_connection_failure_as_json(lab):
    proc = subprocess.run(
        [sys.executable, str(PROBE), "--server", f"https://127.0.0.1:{testing.free_port()}",
         "--cacert", str(lab.pki.ca_cert), "--timeout", "2", "/readyz"],
        capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "error" in json.loads(proc.stdout)
