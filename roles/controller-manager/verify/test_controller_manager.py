"""The controller-manager role: every control-plane host runs a healthy controller
manager, and one of them leads (holds the Lease kube-system/kube-controller-manager).

/healthz is read on the host with the venv's python (the image has no curl); the Lease
through the apiserver role's probe tool with the controller manager's own client
certificate.
Paths and ports come from ``hostvars``.
"""

from labctl.verify.checks import (
    assert_healthz_answers,
    assert_lease_held_by_a_control_plane,
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
)

LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager"


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["controller_manager_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["controller_manager_service"])


def test_key_and_kubeconfig_are_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['controller_manager_pki_dir']}/kube-controller-manager.key",
                                        hostvars["controller_manager_kubeconfig"]])


def test_healthz_answers_ok(host, hostvars):
    url = f"http://{hostvars['controller_manager_bind_address']}:{hostvars['controller_manager_port']}/healthz"
    assert_healthz_answers(host, hostvars["controller_manager_python"], hostvars["controller_manager_healthz_check"], url)


def test_leader_lease_is_held_by_a_control_plane_host(host, hostvars, lab):
    assert_lease_held_by_a_control_plane(
        host, python=hostvars["controller_manager_python"], probe_tool=hostvars["controller_manager_probe_tool"],
        server=hostvars["controller_manager_apiserver_url"], pki_dir=hostvars["controller_manager_pki_dir"],
        client="kube-controller-manager", user="system:kube-controller-manager", lease=LEASE, component="controller manager",
        control_planes=lab.group("control_plane"))
