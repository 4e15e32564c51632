"""The scheduler role: every control-plane host runs a healthy scheduler, and one of
them leads (holds the Lease kube-system/kube-scheduler).

/healthz is read on the host with the venv's python (the image has no curl); the Lease
through the apiserver role's probe tool with the scheduler's own client certificate.
Paths and ports come from ``hostvars``.
"""

from labctl.verify.checks import (
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    run_json,
)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["scheduler_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["scheduler_service"])


def test_key_and_kubeconfig_are_readable_only_by_root(host, hostvars):
    for path in (f"{hostvars['scheduler_pki_dir']}/kube-scheduler.key",
                 hostvars["scheduler_kubeconfig"]):
        f = host.file(path)
        assert f.is_file, f"{path} is missing"
        assert f.mode == 0o600, f"{path} has mode {f.mode:o}, not 600"


def test_healthz_answers_ok(host, hostvars):
    url = f"http://{hostvars['scheduler_bind_address']}:{hostvars['scheduler_port']}/healthz"
    out = host.run("%s -c %s %s", hostvars["scheduler_python"],
                   hostvars["scheduler_healthz_check"], url)
    assert out.rc == 0, f"GET {url} failed: {out.stderr.strip()[-300:]}"


def test_leader_lease_is_held_by_a_control_plane_host(host, hostvars, lab):
    pki = hostvars["scheduler_pki_dir"]
    rc, answer = run_json(host, [
        hostvars["scheduler_python"], hostvars["scheduler_probe_tool"],
        "--server", hostvars["scheduler_apiserver_url"], "--cacert", f"{pki}/ca.crt",
        "--cert", f"{pki}/kube-scheduler.crt", "--key", f"{pki}/kube-scheduler.key", LEASE])
    assert rc == 0, f"GET {LEASE} as system:kube-scheduler failed: {answer}"
    holder = (answer["body"].get("spec") or {}).get("holderIdentity") or ""
    # Identities are <hostname>_<uuid>, as kube-scheduler's.
    hosts = lab.group("control_plane")
    assert holder.split("_")[0] in hosts, (
        f"the scheduler Lease is held by {holder!r}, not by one of {hosts}")
