"""agents.kube's client, informer and leader election against the API server on a real
etcd 3.4, over HTTPS with a client certificate from a kubeconfig (and a bearer token)."""

import asyncio
import json
import os
import subprocess

import pytest

from agents.apiserver import testing
from agents.kube import errors
from agents.kube.client import KubeClient
from agents.kube.informer import Informer, pods_by_node
from agents.kube.leaderelection import LeaderElector
from tests.conftest import need

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("kubeclient"))
    pki = testing.make_pki(work, {"admin": ("admin", ["system:masters"])})
    tokens = os.path.join(work, "tokens.csv")
    with open(tokens, "w") as fh:
        fh.write('admintoken,token-admin,1,"system:masters"\n')
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, secure=True, extra_args=[
                "--tls-cert-file", pki.server_cert, "--tls-private-key-file", pki.server_key,
                "--client-ca-file", pki.ca, "--token-auth-file", tokens,
                "--default-watch-cache-size", "20"]) as api:
        yield {**write_kubeconfigs(work, api.secure_url, pki), "etcd": etcd.endpoint}


def write_kubeconfigs(work, server, pki):
    def write(name, user):
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "lab",
               "clusters": [{"name": "lab", "cluster": {"server": server,
                                                        "certificate-authority": pki.ca}}],
               "users": [{"name": name, "user": user}],
               "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": name}}]}
        path = os.path.join(work, f"kubeconfig-{name}")
        with open(path, "w") as fh:
            json.dump(doc, fh)
        return path
    cert, key = pki.clients["admin"]
    return {"cert": write("admin", {"client-certificate": cert, "client-key": key}),
            "token": write("token", {"token": "admintoken"})}


def run(kubeconfig, body):
    async def main():
        async with KubeClient.from_kubeconfig(kubeconfig) as api:
            return await body(api)
    return asyncio.run(main())


async def until(predicate, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def test_crud_with_errors_carrying_the_status(cluster):
    async def body(api):
        made = await api.create("configmaps", {"metadata": {"name": "crud"},
                                               "data": {"a": "1"}})
        with pytest.raises(errors.AlreadyExists) as exists:
            await api.create("configmaps", {"metadata": {"name": "crud"}})
        updated = await api.update("configmaps", {**made, "data": {"a": "2"}})
        with pytest.raises(errors.Conflict) as stale:
            await api.update("configmaps", {**made, "data": {"a": "3"}})
        patched = await api.patch("configmaps", "crud", {"data": {"b": "x"}})
        listed = await api.list("configmaps", "default")
        await api.delete("configmaps", "crud")
        with pytest.raises(errors.NotFound) as missing:
            await api.get("configmaps", "crud")
        return made, exists.value, updated, stale.value, patched, listed, missing.value
    made, exists, updated, stale, patched, listed, missing = run(cluster["cert"], body)
    assert made["metadata"]["uid"] and made["metadata"]["namespace"] == "default"
    assert exists.status["reason"] == "AlreadyExists" and exists.code == 409
    assert updated["data"] == {"a": "2"}
    assert stale.reason == "Conflict"
    assert patched["data"] == {"a": "2", "b": "x"}
    assert "crud" in [c["metadata"]["name"] for c in listed["items"]]
    assert int(listed["metadata"]["resourceVersion"]) >= int(patched["metadata"]
                                                             ["resourceVersion"])
    assert missing.code == 404 and missing.status["kind"] == "Status"


def test_bearer_token_authenticates(cluster):
    async def body(api):
        return await api.list("namespaces")
    names = [n["metadata"]["name"] for n in run(cluster["token"], body)["items"]]
    assert "default" in names


def test_strategic_merge_patch_keeps_other_containers_and_scale_works(cluster):
    deployment = {"metadata": {"name": "web"}, "spec": {
        "replicas": 1, "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [
            {"name": "app", "image": "app:1"}, {"name": "side", "image": "side:1"}]}}}}

    async def body(api):
        await api.create("deployments", deployment)
        patched = await api.patch("deployments", "web", {"spec": {"template": {"spec": {
            "containers": [{"name": "app", "image": "app:2"}]}}}}, patch_type="strategic")
        await api.scale("deployments", "web", 4)
        scale = await api.get_scale("deployments", "web")
        await api.delete("deployments", "web")
        return patched, scale
    patched, scale = run(cluster["cert"], body)
    images = {c["name"]: c["image"] for c in patched["spec"]["template"]["spec"]["containers"]}
    assert images == {"app": "app:2", "side": "side:1"}
    assert scale["spec"]["replicas"] == 4


def test_binding_and_node_status(cluster):
    async def body(api):
        node = await api.create("nodes", {"metadata": {"name": "bind-n1"}})
        node = await api.update_status("nodes", {**node, "status": {
            "allocatable": {"cpu": "2", "memory": "2Gi", "pods": "10"},
            "conditions": [{"type": "Ready", "status": "True"}]}})
        await api.create("pods", {"metadata": {"name": "bind-p"}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
        await api.bind("default", "bind-p", "bind-n1")
        with pytest.raises(errors.Conflict):
            await api.bind("default", "bind-p", "other")
        pod = await api.get("pods", "bind-p")
        await api.delete("pods", "bind-p", grace_period_seconds=0)
        await api.delete("nodes", "bind-n1")
        return node, pod
    node, pod = run(cluster["cert"], body)
    assert node["status"]["allocatable"]["cpu"] == "2"
    assert pod["spec"]["nodeName"] == "bind-n1"


def test_watch_streams_events_and_reports_gone_for_an_expired_version(cluster):
    need(os.path.exists("/usr/bin/etcdctl"), "needs /usr/bin/etcdctl (Debian etcd-client)")
    async def body(api):
        start = (await api.list("configmaps", "default"))["metadata"]["resourceVersion"]
        await api.create("configmaps", {"metadata": {"name": "w1"}})
        await api.patch("configmaps", "w1", {"data": {"k": "v"}})
        await api.delete("configmaps", "w1")
        seen = []
        async for event_type, obj in api.watch("configmaps", "default",
                                               resource_version=start, timeout_seconds=2):
            if event_type != "BOOKMARK":
                seen.append((event_type, obj["metadata"]["name"]))
            if len(seen) == 3:
                break
        # Push the resourceVersion past the watch cache (20 changes) and compact etcd.
        await api.create("configmaps", {"metadata": {"name": "w2"}})
        for i in range(30):
            await api.patch("configmaps", "w2", {"data": {"n": str(i)}})
        current = (await api.list("configmaps", "default"))["metadata"]["resourceVersion"]
        subprocess.run(["/usr/bin/etcdctl", "--endpoints", cluster["etcd"], "compact",
                        current], check=True, capture_output=True,
                       env={"ETCDCTL_API": "3", "PATH": "/usr/bin"})
        with pytest.raises(errors.Gone):
            async for _ in api.watch("configmaps", "default", resource_version=start,
                                     timeout_seconds=2):
                pass
        return seen
    assert run(cluster["cert"], body) == [("ADDED", "w1"), ("MODIFIED", "w1"),
                                          ("DELETED", "w1")]


def test_informer_caches_and_indexes_pods_by_node(cluster):
    async def body(api):
        inf = Informer(api, "pods", "informer", indexers={"node": pods_by_node}, page_size=2)
        await api.create("namespaces", {"metadata": {"name": "informer"}})
        for i in range(3):
            await api.create("pods", {"metadata": {"name": f"p{i}", "namespace": "informer"},
                                      "spec": {"containers": [{"name": "c", "image": "x"}]}})
        task = asyncio.create_task(inf.run())
        try:
            await asyncio.wait_for(inf.wait_for_sync(), 10)
            listed = sorted(inf.store.list_keys())
            await api.bind("informer", "p1", "n1")
            await api.delete("pods", "p2", "informer", grace_period_seconds=0)
            await until(lambda: inf.store.index_keys("node", "n1") == ["informer/p1"]
                        and "informer/p2" not in inf.store)
            return listed, inf.lists
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    listed, lists = run(cluster["cert"], body)
    assert listed == ["informer/p0", "informer/p1", "informer/p2"]
    assert lists == 1


def test_leader_election_hands_over_on_release(cluster):
    async def body(api):
        events = []

        def candidate(identity):
            async def lead():
                events.append(("start", identity))
                await asyncio.Event().wait()
            return LeaderElector(api, "default", "component-test", identity,
                                 on_started_leading=lead,
                                 on_stopped_leading=lambda: events.append(("stop", identity)),
                                 lease_duration=15, renew_deadline=2, retry_period=0.1)
        a, b = candidate("a"), candidate("b")
        run_a = asyncio.create_task(a.run())
        await until(lambda: a.is_leader)
        run_b = asyncio.create_task(b.run())
        await until(lambda: b.leader == "a")
        lease = await api.get("leases", "component-test", "default")
        run_a.cancel()
        await asyncio.gather(run_a, return_exceptions=True)
        await until(lambda: b.is_leader)     # well before the 15 s lease would expire
        run_b.cancel()
        await asyncio.gather(run_b, return_exceptions=True)
        final = await api.get("leases", "component-test", "default")
        return events, lease, final
    events, lease, final = run(cluster["cert"], body)
    assert events == [("start", "a"), ("stop", "a"), ("start", "b"), ("stop", "b")]
    assert lease["spec"]["holderIdentity"] == "a"
    assert final["spec"]["leaseTransitions"] == 1
    assert final["spec"]["holderIdentity"] == ""
