"""Test doubles shipped with the agent: start a real etcd and an API server as child
processes on free 127.0.0.1 ports, and stop them by PID. Used by the component tests
and the benchmark."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass

ETCD = "/usr/bin/etcd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return resp.status == 200
    except Exception:
        return False


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@dataclass
class Etcd:
    proc: subprocess.Popen
    endpoint: str
    log: str


def etcd_command_from_env() -> list[str] | None:
    """LABCTL_APISERVER_ETCD=agent runs the component tests on our etcd agent instead of
    the real etcd 3.4."""
    if os.environ.get("LABCTL_APISERVER_ETCD") == "agent":
        return [sys.executable, "-m", "agents.etcd"]
    return None


@contextlib.contextmanager
def run_etcd(workdir: str, command: list[str] | None = None, client_port: int | None = None):
    """A one-member etcd: the real etcd 3.4 by default, or `command` (e.g. our etcd agent,
    `[python, -m, agents.etcd]`) given the same flags."""
    client, peer = client_port or free_port(), free_port()
    log_path = os.path.join(workdir, "etcd.log")
    extra = [] if command else ["--logger", "zap", "--log-outputs", "stderr"]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [*(command or [ETCD]), "--name", "t",
             "--data-dir", os.path.join(workdir, "etcd-data"),
             "--listen-client-urls", f"http://127.0.0.1:{client}",
             "--advertise-client-urls", f"http://127.0.0.1:{client}",
             "--listen-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
             "--initial-cluster", f"t=http://127.0.0.1:{peer}", *extra],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        endpoint = f"http://127.0.0.1:{client}"
        healthy = (lambda: _port_open(client)) if command else (
            lambda: _http_ok(endpoint + "/health"))
        wait_for(lambda: proc.poll() is not None or healthy(), 20, "etcd to become healthy")
        if proc.poll() is not None:
            raise RuntimeError(f"etcd exited with {proc.returncode}; see {log_path}")
        yield Etcd(proc, endpoint, log_path)
    finally:
        stop(proc)


@dataclass
class ApiServer:
    proc: subprocess.Popen
    url: str  # plain-HTTP URL (--insecure-port)
    secure_url: str | None
    log: str


@contextlib.contextmanager
def run_apiserver(workdir: str, etcd_endpoint: str, extra_args: list[str] = (),
                  secure: bool = False, name: str = "apiserver", wait_ready: bool = True,
                  command: list[str] | None = None):
    """`command` replaces `python -m agents.apiserver` (e.g. a profiling launcher)."""
    port = free_port()
    args = [*(command or [sys.executable, "-m", "agents.apiserver"]),
            "--etcd-servers", etcd_endpoint,
            "--insecure-port", str(port), "--service-cluster-ip-range", "10.96.0.0/24",
            *extra_args]
    secure_url = None
    if secure:
        sport = free_port()
        args += ["--bind-address", "127.0.0.1", "--secure-port", str(sport)]
        secure_url = f"https://127.0.0.1:{sport}"
    log_path = os.path.join(workdir, f"{name}.log")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=root)
    try:
        url = f"http://127.0.0.1:{port}"
        probe = "/readyz" if wait_ready else "/healthz"
        wait_for(lambda: proc.poll() is not None or _http_ok(url + probe), 30,
                 f"the API server to answer {probe}")
        if proc.poll() is not None:
            with open(log_path) as fh:
                raise RuntimeError(f"apiserver exited with {proc.returncode}: {fh.read()[-3000:]}")
        yield ApiServer(proc, url, secure_url, log_path)
    finally:
        stop(proc)


# ---------------------------------------------------------------- a throwaway PKI


@dataclass
class Pki:
    dir: str
    ca: str
    server_cert: str
    server_key: str
    clients: dict  # name → (cert path, key path)


def make_pki(workdir: str, clients: dict[str, tuple[str, list[str]]]) -> Pki:
    """A CA, a serving cert for 127.0.0.1/localhost, and client certs {name: (CN, [O...])}."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def write(name, cert, key):
        cpath, kpath = os.path.join(workdir, f"{name}.crt"), os.path.join(workdir, f"{name}.key")
        with open(cpath, "wb") as fh:
            fh.write(cert.public_bytes(serialization.Encoding.PEM))
        with open(kpath, "wb") as fh:
            fh.write(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
        return cpath, kpath

    def build(subject, issuer, pub, signer, ca=False, san=None, usage=None):
        b = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
             .public_key(pub).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if usage:
            b = b.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lab-test-ca")])
    ca_cert = build(ca_name, ca_name, ca_key.public_key(), ca_key, ca=True)
    ca_path, _ = write("ca", ca_cert, ca_key)
    skey = ec.generate_private_key(ec.SECP256R1())
    scert = build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
                  ca_name, skey.public_key(), ca_key,
                  san=[x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                       x509.DNSName("localhost")],
                  usage=[ExtendedKeyUsageOID.SERVER_AUTH])
    server_cert, server_key = write("apiserver", scert, skey)
    paths = {}
    for name, (cn, orgs) in clients.items():
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
        cert = build(x509.Name(attrs), ca_name, key.public_key(), ca_key,
                     usage=[ExtendedKeyUsageOID.CLIENT_AUTH])
        paths[name] = write(f"client-{name}", cert, key)
    return Pki(workdir, ca_path, server_cert, server_key, paths)
