from datetime import UTC, datetime, timedelta

import pytest

from agents.apiserver.tables import human_duration, table

pytestmark = pytest.mark.unit

NOW = datetime(2026, 1, 2, 12, 0, 0, tzinfo=UTC)


def stamp(seconds_ago):
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("seconds, text", [
    (5, "5s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600 + 60, "3h1m"),
    (10 * 3600, "10h"), (3 * 86400 + 3600, "3d1h"), (40 * 86400, "40d"), (-5, "<invalid>"),
])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text


def test_pod_table_columns_and_cells():
    pod = {"metadata": {"name": "p", "creationTimestamp": stamp(30)},
           "spec": {"nodeName": "n1", "containers": [{"name": "a"}, {"name": "b"}]},
           "status": {"phase": "Running", "podIP": "10.0.0.5", "containerStatuses": [
               {"name": "a", "ready": True, "restartCount": 2},
               {"name": "b", "ready": False, "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
    t = table("Pod", [pod], NOW, "7")
    names = [c["name"] for c in t["columnDefinitions"]]
    assert names[:5] == ["Name", "Ready", "Status", "Restarts", "Age"]
    assert [c["priority"] for c in t["columnDefinitions"]][5:7] == [1, 1]
    assert t["rows"][0]["cells"][:7] == ["p", "1/2", "CrashLoopBackOff", 3, "30s", "10.0.0.5", "n1"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    assert t["metadata"]["resourceVersion"] == "7"


def test_terminating_pod_status():
    pod = {"metadata": {"name": "p", "deletionTimestamp": stamp(0)}, "spec": {"containers": []},
           "status": {"phase": "Running"}}
    assert table("Pod", [pod], NOW)["rows"][0]["cells"][2] == "Terminating"


def test_deployment_table():
    d = {"metadata": {"name": "web", "creationTimestamp": stamp(60)},
         "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
                  "template": {"spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
         "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}}
    t = table("Deployment", [d], NOW)
    assert [c["name"] for c in t["columnDefinitions"]][:5] == [
        "Name", "Ready", "Up-to-date", "Available", "Age"]
    assert t["rows"][0]["cells"] == ["web", "2/3", 3, 2, "60s", "c", "nginx", "app=web"]


def test_node_and_service_tables():
    node = {"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "nodeInfo": {"kubeletVersion": "v1.32.0"},
                       "addresses": [{"type": "InternalIP", "address": "10.1.0.2"}]}}
    cells = table("Node", [node], NOW)["rows"][0]["cells"]
    assert cells[:3] == ["n1", "Ready", "control-plane"] and cells[4:6] == ["v1.32.0", "10.1.0.2"]
    svc = {"metadata": {"name": "s"}, "spec": {"type": "NodePort", "clusterIP": "10.96.0.9",
                                                "ports": [{"port": 80, "nodePort": 30080}]}}
    assert table("Service", [svc], NOW)["rows"][0]["cells"][:5] == [
        "s", "NodePort", "10.96.0.9", "<none>", "80:30080/TCP"]


def test_include_object_modes():
    obj = {"metadata": {"name": "c"}, "data": {"a": "b"}}
    assert table("ConfigMap", [obj], NOW, include="Object")["rows"][0]["object"] == obj
    assert "object" not in table("ConfigMap", [obj], NOW, include="None")["rows"][0]
