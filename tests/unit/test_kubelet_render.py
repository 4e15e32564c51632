"""Probes as state machines, env and volume rendering, CRI logs, node objects, config,
the exec channel framing: the kubelet's pure parts."""

import base64
import os

import pytest

from agents.kubelet import crilog, execstream, nodestatus, podconfig
from agents.kubelet.config import ConfigError, parse_config
from agents.kubelet.envvars import ConfigError as EnvError
from agents.kubelet.envvars import PodFacts, container_env
from agents.kubelet.probes import LIVENESS, READINESS, STARTUP, ProbeSpec, ProbeTracker
from agents.kubelet.quantity import cpu_millis, memory_bytes
from agents.kubelet.volumes import container_mounts, materialize, plan_volumes

pytestmark = pytest.mark.unit


# ------------------------------------------------------------------ probes


def spec(kind, **probe):
    return ProbeSpec.from_k8s(kind, {"exec": {"command": ["true"]}, **probe})


def test_probe_spec_defaults_and_thresholds():
    s = spec(READINESS, successThreshold=2)
    assert (s.period, s.timeout, s.failure_threshold, s.success_threshold) == (10, 1, 3, 2)
    assert spec(LIVENESS, successThreshold=5).success_threshold == 1
    assert ProbeSpec.from_k8s(LIVENESS, None) is None


def test_probe_timing_initial_delay_then_period():
    t = ProbeTracker(spec(LIVENESS, initialDelaySeconds=5, periodSeconds=3), started_at=100)
    assert not t.is_due(104) and t.is_due(105)
    t.record(True, 105)
    assert t.due_at() == 108


def test_liveness_fails_after_failure_threshold_consecutive_failures():
    t = ProbeTracker(spec(LIVENESS, failureThreshold=3), 0)
    assert t.effective is True  # no verdict yet: alive
    assert [t.record(False, i) for i in range(1, 4)] == [False, False, True]
    assert t.result is False


def test_a_success_resets_the_failure_count():
    t = ProbeTracker(spec(LIVENESS, failureThreshold=2), 0)
    t.record(False, 1)
    t.record(True, 2)
    t.record(False, 3)
    assert t.result is True and t.effective


def test_readiness_starts_unready_and_needs_success_threshold():
    t = ProbeTracker(spec(READINESS, successThreshold=2), 0)
    assert t.effective is False
    assert t.record(True, 1) is False and t.effective is False
    assert t.record(True, 2) is True and t.effective is True


def test_startup_probe_has_no_verdict_until_it_succeeds():
    t = ProbeTracker(spec(STARTUP), 0)
    assert t.result is None
    assert t.record(True, 1) and t.result is True


# ------------------------------------------------------------------ env


POD = {"metadata": {"name": "web", "namespace": "team", "uid": "u1",
                    "labels": {"app": "web"}},
       "spec": {"nodeName": "w1", "containers": []}}
FACTS = PodFacts(pod_ip="10.244.1.5", host_ip="192.0.2.1", node_name="w1")
CMS = {"cfg": {"data": {"color": "blue", "size": "L"}}}
SECRETS = {"sec": {"data": {"pw": base64.b64encode(b"hunter2").decode()}}}


def env_of(container, pod=POD):
    return dict(container_env(pod, container, FACTS, CMS.get, SECRETS.get))


def test_env_values_refs_and_expansion():
    env = env_of({"name": "c", "env": [
        {"name": "A", "value": "x"}, {"name": "B", "value": "$(A)-y-$$(A)"},
        {"name": "NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
        {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "color"}}},
        {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}}]})
    assert env["B"] == "x-y-$(A)"
    assert (env["NAME"], env["NS"], env["IP"], env["NODE"], env["APP"]) == \
        ("web", "team", "10.244.1.5", "w1", "web")
    assert env["COLOR"] == "blue" and env["PW"] == "hunter2"
    assert env["KUBERNETES_SERVICE_HOST"] == "10.96.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "443"


def test_env_from_with_prefix_and_env_wins():
    env = env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}},
                                           {"secretRef": {"name": "sec"}, "prefix": "S_"}],
                  "env": [{"name": "color", "value": "red"}]})
    assert env["color"] == "red" and env["size"] == "L" and env["S_pw"] == "hunter2"


def test_missing_configmap_fails_unless_optional():
    with pytest.raises(EnvError, match='configmap "nope" not found'):
        env_of({"name": "c", "envFrom": [{"configMapRef": {"name": "nope"}}]})
    with pytest.raises(EnvError, match="couldn't find key"):
        env_of({"name": "c", "env": [{"name": "X", "valueFrom": {
            "configMapKeyRef": {"name": "cfg", "key": "nokey"}}}]})
    env = env_of({"name": "c", "env": [{"name": "X", "valueFrom": {
        "secretKeyRef": {"name": "nope", "key": "k", "optional": True}}}]})
    assert "X" not in env


def test_service_links_can_be_disabled():
    pod = {**POD, "spec": {**POD["spec"], "enableServiceLinks": False}}
    assert "KUBERNETES_SERVICE_HOST" not in env_of({"name": "c"}, pod)


def test_quantities():
    assert cpu_millis("500m") == 500 and cpu_millis("2") == 2000 and cpu_millis("0.1") == 100
    assert memory_bytes("64Mi") == 64 << 20 and memory_bytes("1G") == 10**9
    with pytest.raises(ValueError, match="not a Kubernetes quantity"):
        memory_bytes("lots")


# ------------------------------------------------------------------ volumes


def test_volumes_are_planned_written_and_mounted(tmp_path):
    pod = {**POD, "spec": {"volumes": [
        {"name": "scratch", "emptyDir": {}},
        {"name": "conf", "configMap": {"name": "cfg", "items": [{"key": "color",
                                                                "path": "sub/c.txt"}]}},
        {"name": "creds", "secret": {"secretName": "sec", "defaultMode": 0o400}},
        {"name": "host", "hostPath": {"path": str(tmp_path / "hp"),
                                      "type": "DirectoryOrCreate"}}]}}
    plans = plan_volumes(pod, str(tmp_path / "state"), FACTS, CMS.get, SECRETS.get)
    materialize(plans)
    base = tmp_path / "state" / "pods" / "u1" / "volumes"
    assert (base / "kubernetes.io~empty-dir" / "scratch").is_dir()
    assert (base / "kubernetes.io~configmap" / "conf" / "sub" / "c.txt").read_text() == "blue"
    pw = base / "kubernetes.io~secret" / "creds" / "pw"
    assert pw.read_bytes() == b"hunter2" and (os.stat(pw).st_mode & 0o777) == 0o400
    assert (tmp_path / "hp").is_dir()
    mounts = container_mounts({"name": "c", "volumeMounts": [
        {"name": "conf", "mountPath": "/etc/conf", "readOnly": True},
        {"name": "scratch", "mountPath": "/data", "subPath": "x"}]}, plans)
    assert mounts[0].container_path == "/etc/conf" and mounts[0].read_only
    assert mounts[1].host_path.endswith("scratch/x")


def test_volume_of_a_missing_secret_fails(tmp_path):
    pod = {**POD, "spec": {"volumes": [{"name": "s", "secret": {"secretName": "nope"}}]}}
    with pytest.raises(EnvError, match='secret "nope" not found'):
        plan_volumes(pod, str(tmp_path), FACTS, CMS.get, SECRETS.get)


def test_mount_of_an_unknown_volume_is_an_error():
    with pytest.raises(EnvError, match="names no volume"):
        container_mounts({"name": "c", "volumeMounts": [{"name": "x", "mountPath": "/x"}]}, {})


# ------------------------------------------------------------------ pod → runtime configs


def test_container_config_limits_labels_and_expanded_args():
    from agents.kubelet.config import KubeletConfig
    pod = {**POD, "spec": {"containers": [{
        "name": "c", "image": "lab/busybox", "command": ["sh", "-c"], "args": ["echo $(A)"],
        "resources": {"limits": {"cpu": "250m", "memory": "32Mi"}}}]}}
    cfg = podconfig.container_config(pod, pod["spec"]["containers"][0], attempt=2,
                                     init=False, env=[("A", "hi")], mounts=[])
    assert cfg.cpu_millis == 250 and cfg.memory_limit_bytes == 32 << 20
    assert cfg.args == ["echo hi"] and cfg.attempt == 2
    assert cfg.labels["io.kubernetes.pod.uid"] == "u1"
    assert cfg.labels["io.kubernetes.container.name"] == "c"
    kc = KubeletConfig(kubeconfig="k", node_name="w1", node_ip="192.0.2.1")
    dns = podconfig.dns_config(pod, kc)
    assert list(dns.servers) == ["10.96.0.10"]
    assert list(dns.searches) == ["team.svc.cluster.local", "svc.cluster.local",
                                  "cluster.local"]
    host = podconfig.dns_config({**pod, "spec": {"dnsPolicy": "Default"}}, kc,
                                "nameserver 192.0.2.53\nsearch lab\n")
    assert list(host.servers) == ["192.0.2.53"]


# ------------------------------------------------------------------ CRI logs


def records(*lines):
    return b"".join(lines)


def test_cri_records_parse_with_partial_lines_joined():
    data = records(b"2024-01-01T00:00:00.000000001Z stdout P hel",
                   b"\n2024-01-01T00:00:00.5Z stdout F lo\n",
                   b"2024-01-01T00:00:01Z stderr F oops\n",
                   b"2024-01-01T00:00:02Z stdout P unfinished")
    lines, rest = crilog.parse_records(data)
    assert [(line.stream, line.text) for line in lines] == [("stdout", b"hello\n"),
                                                            ("stderr", b"oops\n")]
    assert rest == b"2024-01-01T00:00:02Z stdout P unfinished"


def test_cri_partial_record_kept_until_its_end_arrives():
    lines, rest = crilog.parse_records(b"2024-01-01T00:00:02Z stdout P abc\n")
    assert lines == []
    lines, rest = crilog.parse_records(rest + b"2024-01-01T00:00:03Z stdout F def\n")
    assert [line.text for line in lines] == [b"abcdef\n"] and rest == b""


def test_log_options_tail_since_timestamps_limit():
    text = b"".join(crilog.format_record("stdout", f"line{i}".encode()) for i in range(5))
    lines, _ = crilog.parse_records(text)
    opts = crilog.LogOptions.from_query({"tailLines": "2", "timestamps": "true"})
    chosen = crilog.select(lines, opts, now=0)
    assert [line.text for line in chosen] == [b"line3\n", b"line4\n"]
    assert crilog.render(chosen[0], True).endswith(b"Z line3\n")
    old = crilog.LogOptions.from_query({"sinceSeconds": "1"})
    assert crilog.select(lines, old, now=4e9) == []
    limit = crilog.ByteLimit(7)
    assert limit.take(b"line0\n") == b"line0\n" and limit.take(b"line1\n") == b"l"
    assert limit.exhausted
    with pytest.raises(ValueError, match="tailLines must be an integer"):
        crilog.LogOptions.from_query({"tailLines": "x"})


# ------------------------------------------------------------------ node objects, config


FACTS_HOST = nodestatus.HostFacts(2, 4_000_000, "m" * 32, "uuid", "boot", "6.1.0",
                                  "Debian GNU/Linux 12 (bookworm)", "amd64")


def test_node_status_has_every_node_info_field_and_conditions():
    s = nodestatus.node_status(FACTS_HOST, node_ip="192.0.2.7", hostname="w1", port=10250,
                               max_pods=110, runtime_version="runc://1.1", now="T")
    assert set(s["nodeInfo"]) == {"machineID", "systemUUID", "bootID", "kernelVersion",
                                  "osImage", "containerRuntimeVersion", "kubeletVersion",
                                  "kubeProxyVersion", "operatingSystem", "architecture"}
    assert all(s["nodeInfo"].values())
    assert s["capacity"] == {"cpu": "2", "memory": "4000000Ki", "pods": "110",
                             "ephemeral-storage": "10Gi"}
    assert [c["type"] for c in s["conditions"]] == ["MemoryPressure", "DiskPressure",
                                                    "PIDPressure", "Ready"]
    assert s["addresses"] == [{"type": "InternalIP", "address": "192.0.2.7"},
                              {"type": "Hostname", "address": "w1"}]
    assert s["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    labels = nodestatus.node_object("w1", FACTS_HOST)["metadata"]["labels"]
    assert labels["kubernetes.io/hostname"] == "w1" and labels["kubernetes.io/arch"] == "amd64"


def test_host_facts_parsers_and_reading_this_host():
    assert nodestatus.parse_meminfo("MemTotal:  24000 kB\nMemFree: 1 kB\n") == 24000
    assert nodestatus.parse_os_release('ID=debian\nPRETTY_NAME="Debian 12"\n') == "Debian 12"
    facts = nodestatus.read_host_facts()
    assert facts.cpus >= 1 and facts.memory_kib > 0 and facts.kernel_version


def test_config_rejects_unknown_and_missing_settings():
    with pytest.raises(ConfigError, match="unknown setting"):
        parse_config({"kubeconfig": "k", "node_name": "n", "node_ip": "1.2.3.4", "oops": 1})
    with pytest.raises(ConfigError, match="missing required setting"):
        parse_config({"node_name": "n"})
    cfg = parse_config({"kubeconfig": "k", "node_name": "n", "node_ip": "1.2.3.4",
                        "cluster_dns": "10.96.0.10"})
    assert cfg.cluster_dns == ["10.96.0.10"] and cfg.serve_address == "1.2.3.4"


# ------------------------------------------------------------------ exec framing


def test_exec_framing_and_status():
    assert execstream.unframe(execstream.frame(1, b"hi")) == (1, b"hi")
    ok = execstream.exit_status(0, ["true"])
    assert ok["status"] == "Success"
    bad = execstream.exit_status(3, ["sh", "-c", "exit 3"])
    assert bad["reason"] == "NonZeroExitCode"
    assert bad["details"]["causes"] == [{"reason": "ExitCode", "message": "3"}]


def test_exec_query_parsing():
    from multidict import MultiDict
    q = MultiDict([("command", "sh"), ("command", "-c"), ("command", "echo"),
                   ("stdin", "true"), ("tty", "1")])
    assert execstream.parse_exec_query(q) == (["sh", "-c", "echo"], True, True, True, True)
    with pytest.raises(ValueError, match="command"):
        execstream.parse_exec_query(MultiDict())


def test_real_runtime_factory_wires_the_pod_network_into_the_runtime(tmp_path, monkeypatch):
    import agents.podnet
    import agents.runtime
    from agents.kubelet.config import KubeletConfig
    from agents.kubelet.main import real_runtime_factory
    made = {}
    monkeypatch.setattr(agents.podnet, "BridgeNetwork",
                        lambda **kw: made.setdefault("net", kw) and "NET")
    monkeypatch.setattr(agents.runtime, "Runtime", lambda **kw: made.setdefault("rt", kw))
    cfg = KubeletConfig(kubeconfig="k", node_name="w1", node_ip="10.9.3.22",
                        runtime_root=str(tmp_path / "rt"), image_store=str(tmp_path / "img"),
                        pod_log_dir=str(tmp_path / "logs"), state_dir=str(tmp_path / "st"),
                        podnet_state_dir=str(tmp_path / "pn"), lab_network="10.9.3.0/24")
    real_runtime_factory(cfg)("10.244.3.0/24")
    assert made["net"] == {"pod_cidr": "10.244.3.0/24", "bridge": "lab-pods",
                           "state_dir": str(tmp_path / "pn"), "unreachable": ["10.9.3.1/32"]}
    assert made["rt"] == {"root": str(tmp_path / "rt"), "image_store": str(tmp_path / "img"),
                          "network": "NET", "log_root": str(tmp_path / "logs")}
    assert (tmp_path / "st").is_dir()
