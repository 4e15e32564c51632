"""The apiserver role: every control-plane host serves the Kubernetes API over HTTPS.

Requests run on each control-plane host through the role's probe tool (the image has
no curl or kubectl): ``lab-apiserver-probe.py`` run by the venv's python, verifying
the serving certificate against the lab CA, as kubernetes-admin (the admin client
certificate the role leaves on control planes) or anonymously. Paths and ports come
from ``hostvars``. The checks' GETs are all made in one run of the venv's python (the
tool's main() once per request), read once per host.
"""



from labctl.verify.checks import (
    ToolReadings,
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
)


def probe_argv(hostvars, path, *, admin=False, server=None):
    pki = hostvars["apiserver_pki_dir"]
    argv = ["--server", server or hostvars["apiserver_url"], "--cacert", f"{pki}/ca.crt"]
    if admin:
        argv += ["--cert", f"{pki}/admin.crt", "--key", f"{pki}/admin.key"]
    return [*argv, path]


def every_probe(hostvars, lab):
    """The GETs the checks below make (all read-only): one run of the venv's python."""
    default = "/api/v1/namespaces/default"
    return [probe_argv(hostvars, "/readyz"),
            probe_argv(hostvars, "/api/v1/namespaces", admin=True),
            probe_argv(hostvars, "/api/v1/namespaces/kube-system/secrets"),
            probe_argv(hostvars, default, admin=True),
            *(probe_argv(hostvars, default, admin=True, server=other_url(hostvars, lab, other))
              for other in lab.group("control_plane"))]


def other_url(hostvars, lab, other):
    return f"https://{lab.address(other)}:{hostvars['apiserver_secure_port']}"


_readings = ToolReadings()


def probe(host, hostvars, lab, path, *, admin=False, server=None):
    """GET ``path`` on this host's API server (or ``server``): (exit code, parsed answer)."""
    return _readings.answer(host, hostvars["apiserver_python"], hostvars["apiserver_probe_tool"],
                            probe_argv(hostvars, path, admin=admin, server=server),
                            every_probe(hostvars, lab))


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["apiserver_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["apiserver_service"])


def test_private_keys_are_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [
        f"{hostvars['apiserver_pki_dir']}/{name}"
        for name in ("apiserver.key", "apiserver-etcd-client.key", "apiserver-kubelet-client.key",
                     "admin.key")])


def listening_tcp(host):
    """``address:port`` of every listening TCP socket, read from ``ss`` (IPv4-mapped
    IPv6 forms reduced to IPv4)."""
    out = host.check_output("ss --listening --tcp --numeric --no-header")
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            address, _, port = fields[3].rpartition(":")
            found.add(f"{address.strip('[]').removeprefix('::ffff:')}:{port}")
    return found


def test_secure_port_listens_on_the_host_address_and_loopback(host, hostvars):
    port = hostvars["apiserver_secure_port"]
    bind = hostvars["apiserver_bind_address"]
    wanted = {f"{bind}:{port}"} if bind not in ("0.0.0.0", "::", "*") else \
        {f"{addr}:{port}" for addr in ("0.0.0.0", "*", "::")}
    listening = listening_tcp(host)
    assert wanted & listening, f"not listening on {sorted(wanted)} (listening: {sorted(listening)})"


def test_readyz_answers_ok_over_https_verified_with_the_lab_ca(host, hostvars, lab):
    rc, answer = probe(host, hostvars, lab, "/readyz")
    assert rc == 0, f"/readyz on {hostvars['apiserver_url']}: {answer}"


def test_admin_lists_the_system_namespaces(host, hostvars, lab):
    rc, answer = probe(host, hostvars, lab, "/api/v1/namespaces", admin=True)
    assert rc == 0, f"listing namespaces as kubernetes-admin failed: {answer}"
    names = {item["metadata"]["name"] for item in answer["body"].get("items", [])}
    missing = {"default", "kube-system"} - names
    assert not missing, f"namespaces {sorted(missing)} are missing (listed: {sorted(names)})"


def test_anonymous_request_for_a_resource_is_refused(host, hostvars, lab):
    rc, answer = probe(host, hostvars, lab, "/api/v1/namespaces/kube-system/secrets")
    assert answer.get("status") in (401, 403), (
        f"an anonymous GET of secrets answered {answer.get('status')}, not 401/403: {answer}")


def test_every_api_server_shares_the_same_store(host, hostvars, lab):
    """The ``default`` namespace is one object in etcd: every API server shows the same uid."""
    rc, answer = probe(host, hostvars, lab, "/api/v1/namespaces/default", admin=True)
    assert rc == 0, f"GET namespace default failed: {answer}"
    uid = answer["body"]["metadata"]["uid"]
    for other in lab.group("control_plane"):
        url = other_url(hostvars, lab, other)
        rc, seen = probe(host, hostvars, lab, "/api/v1/namespaces/default", admin=True, server=url)
        assert rc == 0, f"GET namespace default on {other} ({url}) failed: {seen}"
        assert seen["body"]["metadata"]["uid"] == uid, (
            f"{other} shows namespace default with uid {seen['body']['metadata']['uid']}, "
            f"this host {uid}: they do not share one etcd")
