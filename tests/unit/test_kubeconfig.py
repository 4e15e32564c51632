"""``labctl kubeconfig``: the rendered file, read back by the official ``kubernetes``
client's loader; the server chosen from the inventory; clear errors."""

from __future__ import annotations

import base64
import io
import textwrap
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from kubernetes import client, config

from labctl.cli import main
from labctl.errors import LabError
from labctl.inventory import load_inventory
from labctl.kubeconfig import apiserver_endpoint, endpoint_url, render_kubeconfig
from labctl.pki_for_lab import ensure_lab_pki
from labctl.state import LabState

pytestmark = pytest.mark.unit

INVENTORY = """
all:
  vars: {lab_name: kc, lab_network: 10.9.7.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.7.11}
        cp-2: {ansible_host: 10.9.7.12}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1:
"""

CA, CERT, KEY = b"-----CA-----\n", b"-----CERT-----\n", b"-----KEY-----\n"


def inventory(tmp_path: Path, text: str = INVENTORY, extra: dict | None = None):
    path = tmp_path / "lab.yml"
    path.write_text(textwrap.dedent(text))
    inv = load_inventory(path, extra or {})
    assert not inv.errors(), inv.errors()
    return inv


def load_with_client(text: str, tmp_path: Path) -> client.Configuration:
    """What the kubernetes client makes of the file (it writes the embedded data to
    temporary files and points its configuration at them)."""
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return configuration


def test_client_loader_reads_server_ca_and_admin_credentials(tmp_path):
    text = render_kubeconfig(lab_name="kc", server="https://10.9.7.11:6443", ca_pem=CA,
                             client_cert_pem=CERT, client_key_pem=KEY)
    loaded = load_with_client(text, tmp_path)
    assert loaded.host == "https://10.9.7.11:6443"
    assert Path(loaded.ssl_ca_cert).read_bytes() == CA
    assert Path(loaded.cert_file).read_bytes() == CERT
    assert Path(loaded.key_file).read_bytes() == KEY
    assert loaded.verify_ssl is True


def test_names_follow_kubeadm_and_data_is_base64_of_the_pem(tmp_path):
    doc = yaml.safe_load(render_kubeconfig(lab_name="kc", server="https://h:6443", ca_pem=CA,
                                           client_cert_pem=CERT, client_key_pem=KEY))
    assert doc["kind"] == "Config" and doc["apiVersion"] == "v1"
    assert doc["current-context"] == "kc-admin@kc"
    assert doc["contexts"] == [{"name": "kc-admin@kc",
                                "context": {"cluster": "kc", "user": "kc-admin"}}]
    cluster = doc["clusters"][0]["cluster"]
    assert base64.b64decode(cluster["certificate-authority-data"]) == CA
    assert base64.b64decode(doc["users"][0]["user"]["client-key-data"]) == KEY


def test_server_is_the_first_control_plane_on_6443(tmp_path):
    assert apiserver_endpoint(inventory(tmp_path)) == "https://10.9.7.11:6443"


def test_secure_port_from_the_inventory_is_followed(tmp_path):
    inv = inventory(tmp_path, extra={"apiserver_secure_port": 7443})
    assert apiserver_endpoint(inv) == "https://10.9.7.11:7443"


def test_lab_apiserver_endpoint_wins_over_the_first_control_plane(tmp_path):
    inv = inventory(tmp_path, extra={"lab_apiserver_endpoint": "10.9.7.100"})
    assert apiserver_endpoint(inv) == "https://10.9.7.100:6443"


@pytest.mark.parametrize("value, url", [
    ("10.0.0.5", "https://10.0.0.5:6443"),
    ("10.0.0.5:8443", "https://10.0.0.5:8443"),
    ("lb.lab", "https://lb.lab:6443"),
    ("https://lb.lab:443", "https://lb.lab:443"),
    ("https://lb.lab", "https://lb.lab:6443"),
    ("fd00::5", "https://[fd00::5]:6443"),
    ("[fd00::5]:7443", "https://[fd00::5]:7443"),
])
def test_endpoint_forms(value, url):
    assert endpoint_url(value) == url


@pytest.mark.parametrize("bad", ["http://10.0.0.5:6443", "https://:6443", "https://h:99999"])
def test_bad_urls_are_refused_with_an_example(bad):
    with pytest.raises(LabError, match="https://HOST"):
        render_kubeconfig(lab_name="kc", server=bad, ca_pem=CA, client_cert_pem=CERT,
                          client_key_pem=KEY)


def test_lab_without_control_plane_is_refused():
    # the inventory loader refuses such a lab already; this is the endpoint's own guard
    empty = SimpleNamespace(path="lab.yml", groups={}, hosts={})
    with pytest.raises(LabError, match="no control_plane group"):
        apiserver_endpoint(empty)


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_command_embeds_the_lab_pki_admin_certificate(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    inv = inventory(tmp_path)
    pki = ensure_lab_pki(inv, LabState.for_lab("kc"))
    code, out, err = run_cli("kubeconfig", "-i", str(inv.path))
    assert code == 0, err
    loaded = load_with_client(out, tmp_path)
    assert loaded.host == "https://10.9.7.11:6443"
    assert Path(loaded.ssl_ca_cert).read_bytes() == pki.ca_cert.read_bytes()
    assert Path(loaded.cert_file).read_bytes() == pki.cert("admin").read_bytes()
    assert Path(loaded.key_file).read_bytes() == pki.key("admin").read_bytes()


def test_command_server_override(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    inv = inventory(tmp_path)
    ensure_lab_pki(inv, LabState.for_lab("kc"))
    code, out, err = run_cli("kubeconfig", "-i", str(inv.path), "--server", "https://127.0.0.1:7443")
    assert code == 0, err
    assert yaml.safe_load(out)["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:7443"


def test_command_without_pki_says_to_deploy_first(tmp_path, monkeypatch):
    monkeypatch.setenv("LABCTL_HOME", str(tmp_path / "home"))
    inv = inventory(tmp_path)
    code, out, err = run_cli("kubeconfig", "-i", str(inv.path))
    assert code != 0 and out == ""
    assert "ca.crt, admin.crt, admin.key missing" in err and "labctl up -i" in err
