"""The controller-manager role: every control-plane host runs a healthy controller
manager, and one of them leads (holds the Lease kube-system/kube-controller-manager).

/healthz is read on the host with the venv's python (the image has no curl); the Lease
through the apiserver role's probe tool with the controller manager's own client
certificate.
Paths and ports come from ``hostvars``.
"""

from labctl.verify.checks import (
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    run_json,
)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["controller_manager_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["controller_manager_service"])


def test_key_and_kubeconfig_are_readable_only_by_root(host, hostvars):
    for path in (f"{hostvars['controller_manager_pki_dir']}/kube-controller-manager.key",
                 hostvars["controller_manager_kubeconfig"]):
        f = host.file(path)
        assert f.is_file, f"{path} is missing"
        assert f.mode == 0o600, f"{path} has mode {f.mode:o}, not 600"


def test_healthz_answers_ok(host, hostvars):
    url = f"http://{hostvars['controller_manager_bind_address']}:{hostvars['controller_manager_port']}/healthz"
    out = host.run("%s -c %s %s", hostvars["controller_manager_python"],
                   hostvars["controller_manager_healthz_check"], url)
    assert out.rc == 0, f"GET {url} failed: {out.stderr.strip()[-300:]}"


def test_leader_lease_is_held_by_a_control_plane_host(host, hostvars, lab):
    pki = hostvars["controller_manager_pki_dir"]
    rc, answer = run_json(host, [
        hostvars["controller_manager_python"], hostvars["controller_manager_probe_tool"],
        "--server", hostvars["controller_manager_apiserver_url"], "--cacert", f"{pki}/ca.crt",
        "--cert", f"{pki}/kube-controller-manager.crt", "--key", f"{pki}/kube-controller-manager.key", LEASE])
    assert rc == 0, f"GET {LEASE} as system:kube-controller-manager failed: {answer}"
    holder = (answer["body"].get("spec") or {}).get("holderIdentity") or ""
    # Identities are <hostname>_<uuid>, as kube-controller-manager's.
    hosts = lab.group("control_plane")
    assert holder.split("_")[0] in hosts, (
        f"the controller manager Lease is held by {holder!r}, not by one of {hosts}")
