"""The lab's certificate authority and the certificates its agents use.

``ensure_pki`` is idempotent: a certificate is kept while it still matches what the
lab needs (subject, SANs, usages, signed by the current CA, key matches, not close to
expiry); otherwise it is issued again with a fresh key. Keys are ECDSA P-256 (fast to
make), PKCS#8 PEM, mode 0600; certificates are PEM, 0644; directories 0700.

Layout (names are relative to the PKI directory, without ``.crt``/``.key``)::

    ca                                  the lab CA (10 years)
    etcd/<host>-peer                    etcd peer traffic (server + client auth)
    etcd/<host>-server                  etcd client-facing server (server + client auth)
    etcd/apiserver-etcd-client          the API server's client cert for etcd
    etcd/healthcheck-client             probes of etcd health
    apiserver                           the API server's serving cert
    apiserver-kubelet-client            the API server calling kubelets
    admin, kube-scheduler, kube-controller-manager, kube-proxy   client certs
    kubelet/<node>                      one per node (server + client auth)
    service-account.key / .pub          signing key pair for service account tokens
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from labctl.errors import LabError

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_BEFORE = dt.timedelta(days=30)
# Hosts' clocks may lag the lab machine's a little right after boot.
BACKDATE = dt.timedelta(minutes=5)

SERVER = (ExtendedKeyUsageOID.SERVER_AUTH,)
CLIENT = (ExtendedKeyUsageOID.CLIENT_AUTH,)
BOTH = SERVER + CLIENT

_HOST_NAME = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$")


@dataclass(frozen=True)
class CertSpec:
    """What one leaf certificate must say."""

    name: str  # relative path without extension, e.g. "etcd/etcd1-peer"
    common_name: str
    organizations: tuple[str, ...] = ()
    usages: tuple[x509.ObjectIdentifier, ...] = CLIENT
    dns_names: tuple[str, ...] = ()
    ip_addresses: tuple[str, ...] = ()

    def subject(self) -> x509.Name:
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in self.organizations]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, self.common_name))
        return x509.Name(attrs)

    def sans(self) -> set[x509.GeneralName]:
        names: set[x509.GeneralName] = {x509.DNSName(d) for d in self.dns_names}
        names |= {x509.IPAddress(ipaddress.ip_address(i)) for i in self.ip_addresses}
        return names


def _split_sans(values: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Sort SAN strings into (DNS names, IP addresses), dropping duplicates, keeping order."""
    dns: list[str] = []
    ips: list[str] = []
    for value in values:
        try:
            ip = str(ipaddress.ip_address(value))
        except ValueError:
            if value not in dns:
                dns.append(value)
        else:
            if ip not in ips:
                ips.append(ip)
    return tuple(dns), tuple(ips)


def _check_hosts(kind: str, hosts: dict[str, str]) -> None:
    for name, address in hosts.items():
        if not _HOST_NAME.match(name) or ".." in name:
            raise LabError(
                f"PKI: {kind} host name {name!r} cannot be used in a certificate file name"
            )
        if not address:
            raise LabError(f"PKI: {kind} host {name} has no address")


def cert_specs(
    *,
    etcd_hosts: dict[str, str],
    control_plane_hosts: dict[str, str],
    nodes: dict[str, str],
    service_ip: str = "10.96.0.1",
    extra_apiserver_sans: Iterable[str] = (),
) -> list[CertSpec]:
    """Every leaf certificate a lab with these hosts needs (pure: no files)."""
    _check_hosts("etcd", etcd_hosts)
    _check_hosts("control-plane", control_plane_hosts)
    _check_hosts("node", nodes)
    specs = []
    for host, address in etcd_hosts.items():
        dns, ips = _split_sans([host, address])
        specs.append(CertSpec(f"etcd/{host}-peer", host, (), BOTH, dns, ips))
        dns, ips = _split_sans([host, address, "localhost", "127.0.0.1"])
        specs.append(CertSpec(f"etcd/{host}-server", host, (), BOTH, dns, ips))
    specs.append(CertSpec("etcd/apiserver-etcd-client", "kube-apiserver-etcd-client"))
    specs.append(CertSpec("etcd/healthcheck-client", "kube-etcd-healthcheck-client"))
    apiserver_sans = [v for item in control_plane_hosts.items() for v in item]
    apiserver_sans += [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        service_ip,
        "localhost",
        "127.0.0.1",
        *extra_apiserver_sans,
    ]
    dns, ips = _split_sans(apiserver_sans)
    specs.append(CertSpec("apiserver", "kube-apiserver", (), SERVER, dns, ips))
    specs += [
        CertSpec("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
        CertSpec("admin", "kubernetes-admin", ("system:masters",)),
        CertSpec("kube-scheduler", "system:kube-scheduler"),
        CertSpec("kube-controller-manager", "system:kube-controller-manager"),
        CertSpec("kube-proxy", "system:kube-proxy", ("system:node-proxier",)),
    ]
    for node, address in nodes.items():
        dns, ips = _split_sans([node, address])
        specs.append(
            CertSpec(f"kubelet/{node}", f"system:node:{node}", ("system:nodes",), BOTH, dns, ips)
        )
    return specs


@dataclass
class Pki:
    """The lab's PKI directory; ``issued`` names what the last ``ensure_pki`` (re)made."""

    dir: Path
    names: list[str] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def path(self, name: str) -> Path:
        """A file in the PKI: ``path("apiserver.crt")``, ``path("etcd/e1-peer.key")``."""
        resolved = (self.dir / name).resolve()
        if not resolved.is_relative_to(self.dir.resolve()):
            raise LabError(f"PKI file name {name!r} points outside {self.dir}")
        return self.dir / name

    def cert(self, name: str) -> Path:
        return self.path(f"{name}.crt")

    def key(self, name: str) -> Path:
        return self.path(f"{name}.key")

    @property
    def ca_cert(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.dir / "ca.key"

    @property
    def service_account_key(self) -> Path:
        return self.dir / "service-account.key"

    @property
    def service_account_pub(self) -> Path:
        return self.dir / "service-account.pub"

    def files(self) -> list[str]:
        """Every file of the PKI, relative to its directory."""
        found = ["ca.crt", "ca.key", "service-account.key", "service-account.pub"]
        for name in self.names:
            found += [f"{name}.crt", f"{name}.key"]
        return found


# -- file helpers ------------------------------------------------------------------------


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_pair(crt: Path, key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """The cert and key at these paths, or None if either is missing or unreadable."""
    try:
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        return None
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        return None
    if cert.public_key().public_numbers() != private.public_key().public_numbers():
        return None
    return cert, private


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _fresh(cert: x509.Certificate) -> bool:
    now = _now()
    return cert.not_valid_before_utc <= now and cert.not_valid_after_utc - RENEW_BEFORE > now


# -- the CA ----------------------------------------------------------------------------------


def _ensure_ca(pki: Pki, lab_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    pair = _load_pair(pki.ca_cert, pki.ca_key)
    if pair is not None and _fresh(pair[0]):
        return pair
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "labctl"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"labctl {lab_name} CA"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write(pki.ca_key, _key_pem(key), 0o600)
    _write(pki.ca_cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    pki.issued.append("ca")
    return cert, key


# -- leaves ----------------------------------------------------------------------------------


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _matches(cert: x509.Certificate, spec: CertSpec, ca: x509.Certificate) -> bool:
    """Whether an existing certificate still says exactly what ``spec`` asks for."""
    if cert.subject != spec.subject() or not _fresh(cert) or not _signed_by(cert, ca):
        return False
    try:
        usages = set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return False
    if usages != set(spec.usages):
        return False
    try:
        sans = set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        sans = set()
    return sans == spec.sans()


def _issue(
    spec: CertSpec, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    builder = (
        x509.CertificateBuilder()
        .subject_name(spec.subject())
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(min(now + dt.timedelta(days=LEAF_DAYS), ca.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(list(spec.usages)), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans = [x509.DNSName(d) for d in spec.dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in spec.ip_addresses]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _ensure_leaf(
    pki: Pki, spec: CertSpec, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey
) -> None:
    pair = _load_pair(pki.cert(spec.name), pki.key(spec.name))
    if pair is not None and _matches(pair[0], spec, ca):
        return
    cert, key = _issue(spec, ca, ca_key)
    _write(pki.key(spec.name), _key_pem(key), 0o600)
    _write(pki.cert(spec.name), cert.public_bytes(serialization.Encoding.PEM), 0o644)
    pki.issued.append(spec.name)


def _ensure_service_account_keys(pki: Pki) -> None:
    try:
        key = serialization.load_pem_private_key(pki.service_account_key.read_bytes(), None)
        pub = serialization.load_pem_public_key(pki.service_account_pub.read_bytes())
        if key.public_key().public_numbers() == pub.public_numbers():  # type: ignore[union-attr]
            return
    except (OSError, ValueError, TypeError, AttributeError):
        pass
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    _write(pki.service_account_key, _key_pem(key), 0o600)
    _write(pki.service_account_pub, public, 0o644)
    pki.issued.append("service-account")


def ensure_pki(
    pki_dir: Path,
    *,
    lab_name: str,
    etcd_hosts: dict[str, str],
    control_plane_hosts: dict[str, str],
    nodes: dict[str, str],
    service_ip: str = "10.96.0.1",
    extra_apiserver_sans: Iterable[str] = (),
) -> Pki:
    """Make sure the lab's CA and every certificate it needs exist and are current."""
    specs = cert_specs(
        etcd_hosts=etcd_hosts,
        control_plane_hosts=control_plane_hosts,
        nodes=nodes,
        service_ip=service_ip,
        extra_apiserver_sans=extra_apiserver_sans,
    )
    pki_dir = Path(pki_dir)
    pki = Pki(dir=pki_dir, names=[s.name for s in specs])
    for directory in (pki_dir, pki_dir / "etcd", pki_dir / "kubelet"):
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
    ca, ca_key = _ensure_ca(pki, lab_name)
    for spec in specs:
        _ensure_leaf(pki, spec, ca, ca_key)
    _ensure_service_account_keys(pki)
    return pki
