"""The apiserver-lb role: on the hosts it serves, 127.0.0.1:6443 reaches a ready API
server and every control plane is a backend."""

import pytest

from labctl.verify.checks import assert_service_running_and_enabled


def enabled(hostvars) -> bool:
    return str(hostvars["apiserver_lb_enabled"]).lower() == "true"


@pytest.fixture
def lb(hostvars):
    if not enabled(hostvars):
        pytest.skip("no load balancer here (a control plane, or a lab with one API server)")
    return hostvars


def test_haproxy_is_running_and_enabled(host, lb):
    assert_service_running_and_enabled(host, "haproxy")


def test_every_control_plane_is_a_backend(host, lb):
    config = host.file(lb["apiserver_lb_config"]).content_string
    for cp in lb["groups"]["control_plane"]:
        address = lb["hostvars"][cp]["ansible_host"]
        assert f"server {cp} {address}:" in config, f"{cp} ({address}) is not a backend"


def test_an_api_server_answers_readyz_through_the_balancer(host, lb):
    url = f"https://{lb['apiserver_lb_address']}:{lb['apiserver_lb_port']}/readyz"
    code = ("import ssl,urllib.request;c=ssl.create_default_context();c.check_hostname=False;"
            "c.verify_mode=ssl.CERT_NONE;"
            f"print(urllib.request.urlopen({url!r},context=c,timeout=5).status)")
    out = host.run("/opt/lab/venv/bin/python -c %s", code)
    assert out.rc == 0 and out.stdout.strip() == "200", f"{url}: {out.stdout} {out.stderr}"
