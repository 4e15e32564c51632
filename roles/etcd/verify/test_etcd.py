"""The etcd role: every host of the etcd group runs a healthy member of one cluster.

Checks run on each etcd host through the role's client tool (the image has no
etcdctl): ``lab-etcdctl.py`` run by the venv's python over TLS with the health-check
client certificate. Paths and ports come from ``hostvars``; the expected members from
the inventory (``lab``). The read-only calls (health, members, status) are made in one
run of the venv's python (the tool's main() once per call), read once per host.
"""

import uuid

from labctl.verify.checks import (
    ToolReadings,
    assert_readable_only_by_root,
    assert_service_running_and_enabled,
    assert_unit_restarts_on_failure,
    tool_runs,
)


def etcd_hosts(lab):
    return lab.group("etcd")


def client_url(lab, hostvars, name):
    return f"https://{lab.address(name)}:{hostvars['etcd_client_port']}"


def tool_argv(command, *args, endpoints=None):
    return (["--endpoints", ",".join(endpoints)] if endpoints else []) + [command, *args]


_readings = ToolReadings()


def client(host, hostvars, lab, command, *args, endpoints=None):
    """The client tool's answer on ``host``: (exit code, parsed JSON output). The
    read-only calls of the checks below are made in one run of the venv's python."""
    every_member = [client_url(lab, hostvars, name) for name in etcd_hosts(lab)]
    together = [tool_argv("health"), tool_argv("members"),
                tool_argv("status", endpoints=every_member)]
    return _readings.answer(host, hostvars["etcd_python"], hostvars["etcd_client_tool"],
                            tool_argv(command, *args, endpoints=endpoints), together)


def test_unit_is_running_and_enabled(host, hostvars):
    assert_service_running_and_enabled(host, hostvars["etcd_service"])


def test_unit_restarts_on_failure(host, hostvars):
    assert_unit_restarts_on_failure(host, hostvars["etcd_service"])


def test_private_keys_are_readable_only_by_root(host, hostvars):
    assert_readable_only_by_root(host, [f"{hostvars['etcd_pki_dir']}/{name}" for name in (
        "server.key", "peer.key", "healthcheck-client.key")])


def test_data_dir_is_private(host, hostvars):
    data = host.file(hostvars["etcd_data_dir"])
    assert data.is_directory, f"{data.path} is missing"
    assert data.mode == 0o700, f"{data.path} has mode {data.mode:o}, not 700"


def listening_tcp(host):
    """``address:port`` of every listening TCP socket. gRPC listens on an IPv4 address
    through an IPv4-mapped IPv6 socket (``[::ffff:10.0.0.5]:2379``), which testinfra's
    ``host.socket`` does not match, so ``ss`` is read here."""
    out = host.check_output("ss --listening --tcp --numeric --no-header")
    found = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            address, _, port = fields[3].rpartition(":")
            found.add(f"{address.strip('[]').removeprefix('::ffff:')}:{port}")
    return found


def test_client_peer_and_metrics_ports_listen(host, hostvars, lab):
    address = lab.address(hostvars["inventory_hostname"])
    wanted = [
        f"{address}:{hostvars['etcd_client_port']}",
        f"127.0.0.1:{hostvars['etcd_client_port']}",
        f"{address}:{hostvars['etcd_peer_port']}",
        f"127.0.0.1:{hostvars['etcd_metrics_port']}",
    ]
    listening = listening_tcp(host)
    closed = [w for w in wanted if w not in listening]
    assert not closed, f"not listening on {', '.join(closed)} (listening: {sorted(listening)})"


def test_endpoint_is_healthy(host, hostvars, lab):
    rc, rows = client(host, hostvars, lab, "health")
    assert rc == 0 and all(r.get("health") for r in rows), f"unhealthy: {rows}"


def test_every_member_of_the_etcd_group_is_listed(host, hostvars, lab):
    rc, answer = client(host, hostvars, lab, "members")
    assert rc == 0, f"member list failed: {answer}"
    members = {m["name"]: m for m in answer["members"]}
    assert sorted(members) == sorted(etcd_hosts(lab)), (
        f"members {sorted(members)}, inventory's etcd group {sorted(etcd_hosts(lab))}")
    for name, member in members.items():
        peer = f"https://{lab.address(name)}:{hostvars['etcd_peer_port']}"
        assert member["peer_urls"] == [peer], f"{name} has peer URLs {member['peer_urls']}, not {peer}"
        assert client_url(lab, hostvars, name) in member["client_urls"], (
            f"{name} advertises {member['client_urls']}")
        assert not member["is_learner"], f"{name} is still a learner"


def test_exactly_one_leader_across_the_cluster(host, hostvars, lab):
    endpoints = [client_url(lab, hostvars, name) for name in etcd_hosts(lab)]
    rc, rows = client(host, hostvars, lab, "status", endpoints=endpoints)
    assert rc == 0, f"status failed on some member: {[r for r in rows if 'error' in r]}"
    leaders = [r["endpoint"] for r in rows if r["is_leader"]]
    assert len(leaders) == 1, f"{len(leaders)} members say they lead: {leaders}"
    seen = {r["leader"] for r in rows}
    assert len(seen) == 1, f"members disagree about the leader: {seen}"


def test_put_on_this_member_is_read_back_from_every_member(host, hostvars, lab):
    key = f"/labctl-verify/{hostvars['inventory_hostname']}"
    value = uuid.uuid4().hex
    endpoints = [client_url(lab, hostvars, name) for name in etcd_hosts(lab)]
    # the put, then the read back from every member, in one run of the client tool
    put_run, get_run = tool_runs(host, hostvars["etcd_python"], hostvars["etcd_client_tool"],
                                 [tool_argv("put", key, value),
                                  tool_argv("get", key, endpoints=endpoints)])
    rc, put = put_run.answer()
    assert rc == 0, f"put {key} failed: {put}"
    rc, rows = get_run.answer()
    wrong = [r for r in rows if r.get("value") != value]
    assert rc == 0 and not wrong, f"read back of {key}={value} differs: {wrong}"
