"""The lab PKI: subjects, SANs, usages, chains, file modes, idempotence, reissue."""

from __future__ import annotations

import ipaddress
import shutil
import subprocess

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    Criticality,
    DNSName,
    ExtensionPolicy,
    IPAddress,
    PolicyBuilder,
    Store,
    VerificationError,
)

from labctl.errors import LabError
from labctl.pki import ensure_pki

pytestmark = pytest.mark.unit

ETCD = {"e1": "10.0.0.11", "e2": "10.0.0.12", "e3": "10.0.0.13"}
CONTROL = {"cp1": "10.0.0.21", "cp2": "10.0.0.22"}
NODES = {"w1": "10.0.0.31", "w2": "10.0.0.32"}
SERVER = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT = ExtendedKeyUsageOID.CLIENT_AUTH


def make(tmp_path, **overrides):
    args = dict(
        lab_name="demo",
        etcd_hosts=ETCD,
        control_plane_hosts=CONTROL,
        nodes=NODES,
        extra_apiserver_sans=("api.demo.lab",),
    )
    args.update(overrides)
    return ensure_pki(tmp_path / "pki", **args)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make(tmp_path_factory.mktemp("pki"))


def load(pki, name) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pki.cert(name).read_bytes())


def subject(cert) -> tuple[str, list[str]]:
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
    return cn, orgs


def sans(cert) -> set[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return set(ext.get_values_for_type(x509.DNSName)) | {
        str(ip) for ip in ext.get_values_for_type(x509.IPAddress)
    }


def usages(cert) -> set:
    return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def builder(pki, *, client: bool = False) -> PolicyBuilder:
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    b = PolicyBuilder().store(Store([ca]))
    if not client:
        return b
    # Kubernetes client certs carry no SAN; WebPKI's defaults would demand one.
    ee = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    return b.extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ee)


def test_ca_is_a_ten_year_ec_ca(pki):
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert ca.subject == ca.issuer and "demo" in subject(ca)[0]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.extensions.get_extension_for_class(x509.KeyUsage).value.key_cert_sign
    assert (ca.not_valid_after_utc - ca.not_valid_before_utc).days >= 3650
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"


EXPECTED = {
    # name: (CN, O, SANs or None, usages)
    "etcd/e2-peer": ("e2", [], {"e2", "10.0.0.12"}, {SERVER, CLIENT}),
    "etcd/e2-server": ("e2", [], {"e2", "10.0.0.12", "localhost", "127.0.0.1"}, {SERVER, CLIENT}),
    "etcd/apiserver-etcd-client": ("kube-apiserver-etcd-client", [], set(), {CLIENT}),
    "etcd/healthcheck-client": ("kube-etcd-healthcheck-client", [], set(), {CLIENT}),
    "apiserver": (
        "kube-apiserver",
        [],
        {
            "cp1",
            "10.0.0.21",
            "cp2",
            "10.0.0.22",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "10.96.0.1",
            "localhost",
            "127.0.0.1",
            "api.demo.lab",
        },
        {SERVER},
    ),  # fmt: skip
    "apiserver-kubelet-client": (
        "kube-apiserver-kubelet-client",
        ["system:masters"],
        set(),
        {CLIENT},
    ),
    "admin": ("kubernetes-admin", ["system:masters"], set(), {CLIENT}),
    "kube-scheduler": ("system:kube-scheduler", [], set(), {CLIENT}),
    "kube-controller-manager": ("system:kube-controller-manager", [], set(), {CLIENT}),
    "kube-proxy": ("system:kube-proxy", ["system:node-proxier"], set(), {CLIENT}),
    "kubelet/w1": ("system:node:w1", ["system:nodes"], {"w1", "10.0.0.31"}, {SERVER, CLIENT}),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_leaf_subjects_sans_and_usages(pki, name):
    cn, orgs, expected_sans, expected_usages = EXPECTED[name]
    cert = load(pki, name)
    assert subject(cert) == (cn, orgs)
    assert sans(cert) == expected_sans
    assert usages(cert) == expected_usages
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    days = (cert.not_valid_after_utc - cert.not_valid_before_utc).days
    assert 365 <= days <= 366


def test_every_host_gets_its_certs(pki):
    for host in ETCD:
        assert pki.cert(f"etcd/{host}-peer").exists() and pki.key(f"etcd/{host}-server").exists()
    for node in NODES:
        assert subject(load(pki, f"kubelet/{node}"))[0] == f"system:node:{node}"
    assert not pki.cert("kubelet/cp1").exists()  # control-plane hosts are not nodes here


def test_server_chains_verify_against_the_ca(pki):
    b = builder(pki)
    for identity in (
        DNSName("kubernetes.default.svc"),
        IPAddress(ipaddress.ip_address("10.96.0.1")),
    ):
        chain = b.build_server_verifier(identity).verify(load(pki, "apiserver"), [])
        assert chain[-1].subject == x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()).subject
    b.build_server_verifier(DNSName("localhost")).verify(load(pki, "etcd/e1-server"), [])
    b.build_server_verifier(IPAddress(ipaddress.ip_address("10.0.0.13"))).verify(
        load(pki, "etcd/e3-peer"), []
    )
    with pytest.raises(VerificationError):  # the name is not in the etcd peer cert
        b.build_server_verifier(DNSName("kubernetes")).verify(load(pki, "etcd/e1-peer"), [])


def test_client_chains_verify_and_usages_are_enforced(pki):
    verifier = builder(pki, client=True).build_client_verifier()
    for name in ("admin", "kube-proxy", "etcd/apiserver-etcd-client", "kubelet/w2", "etcd/e1-peer"):
        verifier.verify(load(pki, name), [])
    with pytest.raises(VerificationError, match="EKU"):
        verifier.verify(load(pki, "apiserver"), [])  # serving only


def test_keys_match_certs_and_modes(pki):
    assert pki.dir.stat().st_mode & 0o777 == 0o700
    assert (pki.dir / "etcd").stat().st_mode & 0o777 == 0o700
    for rel in pki.files():
        path = pki.path(rel)
        expected = 0o600 if rel.endswith(".key") else 0o644
        assert path.stat().st_mode & 0o777 == expected, rel
    for name in pki.names:
        key = serialization.load_pem_private_key(pki.key(name).read_bytes(), None)
        assert key.public_key().public_numbers() == load(pki, name).public_key().public_numbers()
    sa_key = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), None)
    sa_pub = serialization.load_pem_public_key(pki.service_account_pub.read_bytes())
    assert sa_key.public_key().public_numbers() == sa_pub.public_numbers()


def test_openssl_accepts_the_chains(pki):
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs openssl")
    for name, purpose in (
        ("apiserver", "sslserver"),
        ("etcd/e1-server", "sslserver"),
        ("etcd/e1-peer", "sslclient"),
        ("admin", "sslclient"),
        ("kubelet/w1", "sslserver"),
    ):
        out = subprocess.run(
            [
                openssl,
                "verify",
                "-CAfile",
                str(pki.ca_cert),
                "-purpose",
                purpose,
                str(pki.cert(name)),
            ],
            capture_output=True,
            text=True,
        )
        assert out.returncode == 0 and out.stdout.strip().endswith(": OK"), (name, out.stderr)


def test_second_run_keeps_everything(tmp_path):
    first = make(tmp_path)
    assert "ca" in first.issued and len(first.issued) == len(first.names) + 2
    before = {rel: first.path(rel).read_bytes() for rel in first.files()}
    again = make(tmp_path)
    assert again.issued == []
    assert {rel: again.path(rel).read_bytes() for rel in again.files()} == before


def test_changed_sans_reissue_only_the_affected_certs(tmp_path):
    first = make(tmp_path)
    untouched = first.cert("admin").read_bytes()
    second = make(
        tmp_path, extra_apiserver_sans=("api.other.lab",), nodes={**NODES, "w3": "10.0.0.33"}
    )
    assert sorted(second.issued) == ["apiserver", "kubelet/w3"]
    assert "api.other.lab" in sans(load(second, "apiserver"))
    assert second.cert("admin").read_bytes() == untouched
    third = make(
        tmp_path,
        extra_apiserver_sans=("api.other.lab",),
        etcd_hosts={**ETCD, "e1": "10.0.0.99"},
        nodes={**NODES, "w3": "10.0.0.33"},
    )
    assert sorted(third.issued) == ["etcd/e1-peer", "etcd/e1-server"]


def test_missing_or_broken_files_are_remade(tmp_path):
    first = make(tmp_path)
    first.key("kube-proxy").unlink()
    first.cert("admin").write_text("garbage")
    second = make(tmp_path)
    assert sorted(second.issued) == ["admin", "kube-proxy"]


def test_a_new_ca_reissues_every_leaf(tmp_path):
    first = make(tmp_path)
    first.ca_key.unlink()
    second = make(tmp_path)
    assert set(second.issued) == {"ca", *first.names}
    builder(second, client=True).build_client_verifier().verify(load(second, "admin"), [])


def test_bad_host_names_are_refused(tmp_path):
    with pytest.raises(LabError, match="cannot be used in a certificate file name"):
        make(tmp_path, nodes={"../evil": "10.0.0.1"})
    with pytest.raises(LabError, match="has no address"):
        make(tmp_path, nodes={"w1": ""})


def test_path_stays_inside_the_pki(pki):
    assert pki.path("etcd/e1-peer.crt") == pki.dir / "etcd" / "e1-peer.crt"
    with pytest.raises(LabError, match="outside"):
        pki.path("../secret")
