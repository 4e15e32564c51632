"""The kube-proxy role: the daemon runs, is healthy, and the `kubernetes` Service's
ClusterIP (the first address of lab_service_cidr) is programmed and answers: a TCP
connection from the host to ClusterIP:443 reaches an API server through the rules.

Everything is read on the host in one run of the venv's python (the image has no curl):
the rules as nft/iptables print them, /healthz, and the connection attempt.
"""

import ipaddress

from labctl.verify.checks import (
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    once_per_host,
    run_json,
)

# argv: mode, health URL, ClusterIP
STATE = r"""
import json, socket, subprocess, sys, urllib.request
mode, health, ip = sys.argv[1:4]
report = {}
argv = (["nft", "list", "table", "ip", "lab-proxy"] if mode == "nftables"
        else ["iptables-save", "-t", "nat"])
done = subprocess.run(argv, capture_output=True, text=True)
report["rules"] = done.stdout if done.returncode == 0 else "ERROR: " + done.stderr
try:
    with urllib.request.urlopen(health, timeout=5) as resp:
        report["healthz"] = resp.read().decode()
except Exception as exc:
    report["healthz"] = f"{type(exc).__name__}: {exc}"
try:
    socket.create_connection((ip, 443), timeout=3).close()
    report["connect"] = "ok"
except OSError as exc:
    report["connect"] = f"{type(exc).__name__}: {exc}"
print(json.dumps(report))
"""


def kubernetes_ip(hostvars) -> str:
    return str(ipaddress.ip_network(hostvars["kube_proxy_service_cidr"])[1])


_states: dict[str, dict] = {}


def state(host, hostvars):
    """The report of STATE for this host (read once, judged by several checks)."""
    def read():
        health = f"http://{hostvars['kube_proxy_bind_address']}:{hostvars['kube_proxy_port']}/healthz"
        _, report = run_json(host, [hostvars["kube_proxy_python"], "-c", STATE,
                                    hostvars["kube_proxy_mode"], health, kubernetes_ip(hostvars)])
        return report
    return once_per_host(_states, host, read)


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["kube_proxy_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["kube_proxy_service"])


def test_client_key_is_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['kube_proxy_config_dir']}/client.key"])


def test_healthz_says_the_rules_are_programmed(host, hostvars):
    report = state(host, hostvars)
    assert report["healthz"] == "ok", f"kube-proxy /healthz: {report['healthz']}"


def test_rules_hold_the_kubernetes_service_cluster_ip(host, hostvars):
    report = state(host, hostvars)
    ip = kubernetes_ip(hostvars)
    if hostvars["kube_proxy_mode"] == "nftables":
        wanted = f"{ip} . tcp . 443"
        assert "table ip lab-proxy" in report["rules"], (
            f"no nftables table ip lab-proxy: {report['rules'][:500]}")
    else:
        wanted = f"-d {ip}/32 -p tcp -m tcp --dport 443"
    assert wanted in report["rules"], (
        f"the kubernetes Service ({ip}:443) is not programmed: {report['rules'][:2000]}")


def test_kubernetes_cluster_ip_answers_from_the_host(host, hostvars):
    report = state(host, hostvars)
    assert report["connect"] == "ok", (
        f"connecting to {kubernetes_ip(hostvars)}:443 from the host: {report['connect']}")
