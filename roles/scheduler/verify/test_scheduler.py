"""The scheduler role: every control-plane host runs a healthy scheduler, and one of
them leads (holds the Lease kube-system/kube-scheduler).

/healthz is read on the host with the venv's python (the image has no curl); the Lease
through the apiserver role's probe tool with the scheduler's own client certificate.
Paths and ports come from ``hostvars``.
"""

from labctl.verify.checks import (
    assert_healthz_answers,
    assert_lease_held_by_a_control_plane,
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-scheduler"


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["scheduler_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["scheduler_service"])


def test_key_and_kubeconfig_are_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['scheduler_pki_dir']}/kube-scheduler.key",
                                        hostvars["scheduler_kubeconfig"]])


def test_healthz_answers_ok(host, hostvars):
    url = f"http://{hostvars['scheduler_bind_address']}:{hostvars['scheduler_port']}/healthz"
    assert_healthz_answers(host, hostvars["scheduler_python"], hostvars["scheduler_healthz_check"], url)


def test_leader_lease_is_held_by_a_control_plane_host(host, hostvars, lab):
    assert_lease_held_by_a_control_plane(
        host, python=hostvars["scheduler_python"], probe_tool=hostvars["scheduler_probe_tool"],
        server=hostvars["scheduler_apiserver_url"], pki_dir=hostvars["scheduler_pki_dir"],
        client="kube-scheduler", user="system:kube-scheduler", lease=LEASE, component="scheduler",
        control_planes=lab.group("control_plane"))
