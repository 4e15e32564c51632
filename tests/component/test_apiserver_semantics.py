"""API semantics on a real etcd 3.4: watch, optimistic concurrency, several API servers
on one etcd, bad input, and the kubelet proxy (logs/exec) against a stand-in kubelet."""

import asyncio
import base64
import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request

import pytest
from aiohttp import web

from agents.apiserver import testing
from tests.conftest import need

pytestmark = pytest.mark.component


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    work = str(tmp_path_factory.mktemp("semantics"))
    with testing.run_etcd(work, testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(work, etcd.endpoint, ["--kubelet-https", "false"],
                                  name="a") as a, \
            testing.run_apiserver(work, etcd.endpoint, name="b") as b:
        yield {"work": work, "etcd": etcd, "a": a.url, "b": b.url}


def call(base, method, path, body=None, content_type="application/json", raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def cm(name, labels=None, data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "labels": labels or {}}, "data": data or {}}


class WatchStream:
    """Reads a watch's newline-delimited JSON events on a thread."""

    def __init__(self, url):
        self.events, self.done = [], threading.Event()
        self.resp = urllib.request.urlopen(url, timeout=30)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        try:
            for line in self.resp:
                self.events.append(json.loads(line))
        except Exception:
            pass
        finally:
            self.done.set()

    def wait_for(self, predicate, what, timeout=20):
        testing.wait_for(lambda: predicate(self.events), timeout, what)

    def close(self):
        # Shut the socket down so the reader thread ends now, not at the server's timeout.
        with contextlib.suppress(Exception):
            self.resp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        self.done.wait(5)
        self.resp.close()


def test_watch_initial_state_selectors_and_bookmarks(env):
    a = env["a"]
    call(a, "POST", "/api/v1/namespaces/default/configmaps", cm("pre", {"sel": "yes"}))
    stream = WatchStream(f"{a}/api/v1/namespaces/default/configmaps?watch=true"
                         "&labelSelector=sel%3Dyes&allowWatchBookmarks=true&timeoutSeconds=20")
    try:
        stream.wait_for(lambda ev: any(e["type"] == "ADDED" and
                                       e["object"]["metadata"]["name"] == "pre" for e in ev),
                        "the initial ADDED event")
        call(a, "POST", "/api/v1/namespaces/default/configmaps", cm("ignored"))
        call(a, "PATCH", "/api/v1/namespaces/default/configmaps/pre",
             {"metadata": {"labels": {"sel": "no"}}}, "application/merge-patch+json")
        stream.wait_for(lambda ev: any(e["type"] == "DELETED" for e in ev),
                        "a DELETED event when the object leaves the selection")
        # a change elsewhere moves the store revision on: the next bookmark carries it
        call(a, "POST", "/api/v1/namespaces/default/secrets",
             {"metadata": {"name": "elsewhere"}})
        stream.wait_for(lambda ev: any(e["type"] == "BOOKMARK" for e in ev), "a bookmark")
        names = {e["object"]["metadata"].get("name") for e in stream.events}
        assert "ignored" not in names
        bookmark = next(e for e in stream.events if e["type"] == "BOOKMARK")
        assert int(bookmark["object"]["metadata"]["resourceVersion"]) > 0
    finally:
        stream.close()


def test_watch_timeout_ends_the_stream(env):
    started = time.monotonic()
    stream = WatchStream(f"{env['a']}/api/v1/namespaces/default/pods?watch=1"
                         "&resourceVersion=0&timeoutSeconds=1")
    assert stream.done.wait(10)
    assert time.monotonic() - started < 15  # the default timeout would be 30 minutes


def test_one_etcd_watch_per_resource_however_many_clients(env):
    if testing.etcd_command_from_env():
        pytest.skip("counts watchers through etcd 3.4's /metrics")
    def etcd_watchers():
        with urllib.request.urlopen(env["etcd"].endpoint + "/metrics", timeout=5) as resp:
            for line in resp.read().decode().splitlines():
                if line.startswith("etcd_debugging_mvcc_watcher_total "):
                    return float(line.split()[1])
        raise AssertionError("etcd did not report etcd_debugging_mvcc_watcher_total")
    before = etcd_watchers()
    streams = [WatchStream(f"{env['a']}/api/v1/namespaces/default/configmaps?watch=1"
                           "&timeoutSeconds=20") for _ in range(20)]
    try:
        call(env["a"], "POST", "/api/v1/namespaces/default/configmaps", cm("fanout"))
        for s in streams:
            s.wait_for(lambda ev: any(e["object"]["metadata"].get("name") == "fanout"
                                      for e in ev), "every watcher to see the change")
        assert etcd_watchers() == before
    finally:
        for s in streams:
            s.close()


def test_concurrent_writers_lose_no_update(env):
    a, b = env["a"], env["b"]
    call(a, "POST", "/api/v1/namespaces/default/configmaps", cm("counter", data={"n": "0"}))
    conflicts = []

    def bump(base):
        for _ in range(8):
            while True:
                _, obj = call(base, "GET", "/api/v1/namespaces/default/configmaps/counter")
                obj["data"]["n"] = str(int(obj["data"]["n"]) + 1)
                code, _ = call(base, "PUT", "/api/v1/namespaces/default/configmaps/counter", obj)
                if code == 200:
                    break
                assert code == 409
                conflicts.append(1)

    threads = [threading.Thread(target=bump, args=(a if n % 2 else b,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    _, obj = call(a, "GET", "/api/v1/namespaces/default/configmaps/counter")
    assert obj["data"]["n"] == "48"
    assert conflicts, "six writers on one object should have collided at least once"


def test_two_api_servers_share_state_and_service_ips(env):
    a, b = env["a"], env["b"]
    ips = set()
    for n in range(6):
        base = a if n % 2 else b
        code, svc = call(base, "POST", "/api/v1/namespaces/default/services", {
            "metadata": {"name": f"svc{n}"}, "spec": {"type": "NodePort",
                                                      "ports": [{"port": 80}]}})
        assert code == 201, svc
        ips.add(svc["spec"]["clusterIP"])
        assert 30000 <= svc["spec"]["ports"][0]["nodePort"] <= 32767
    assert len(ips) == 6 and "10.96.0.1" not in ips
    code, _ = call(a, "GET", "/api/v1/namespaces/default/services/svc0")
    assert code == 200
    code, err = call(b, "POST", "/api/v1/namespaces/default/services", {
        "metadata": {"name": "dup"}, "spec": {"clusterIP": sorted(ips)[0],
                                              "ports": [{"port": 80}]}})
    assert code == 422 and "already allocated" in err["message"]


@pytest.mark.parametrize("raw, content_type, code, reason", [
    (b"{not json", "application/json", 400, "BadRequest"),
    (json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x1"}}).encode(),
     "application/json", 400, "BadRequest"),
    (json.dumps({"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x2"}}).encode(),
     "application/json", 400, "BadRequest"),
    (json.dumps(cm("Bad_Name")).encode(), "application/json", 422, "Invalid"),
    (json.dumps({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x3"},
                 "extra": 1}).encode(), "application/json", 400, "BadRequest"),
    (b"name: x4", "text/plain", 415, "UnsupportedMediaType"),
    (json.dumps(cm("x5", data={"big": "x" * (4 << 20)})).encode(), "application/json", 413,
     "RequestEntityTooLarge"),
])
def test_bad_input_gets_a_status_and_stores_nothing(env, raw, content_type, code, reason):
    base = env["a"]
    _, before = call(base, "GET", "/api/v1/namespaces/default/configmaps")
    got, status = call(base, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict",
                       raw=raw, content_type=content_type)
    assert (got, status["kind"], status["code"], status["reason"]) == (code, "Status", code, reason)
    assert status["message"]
    _, after = call(base, "GET", "/api/v1/namespaces/default/configmaps")
    assert len(after["items"]) == len(before["items"])


def test_not_found_and_missing_namespace(env):
    code, status = call(env["a"], "GET", "/api/v1/namespaces/default/pods/nope")
    assert (code, status["reason"], status["details"]["name"]) == (404, "NotFound", "nope")
    code, status = call(env["a"], "POST", "/api/v1/namespaces/ghost/configmaps", cm("x"))
    assert code == 404 and 'namespaces "ghost" not found' in status["message"]
    code, _ = call(env["a"], "GET", "/api/v1/widgets")
    assert code == 404


# ---------------------------------------------------------------- kubelet proxy


class StandInKubelet:
    """Serves containerLogs and a v5/v4 WebSocket exec like a kubelet, on a thread."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.port = testing.free_port()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)

    async def _start(self):
        app = web.Application()
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self.logs)
        app.router.add_get("/exec/{ns}/{pod}/{container}", self.exec)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def logs(self, request):
        m = request.match_info
        text = f"log of {m['ns']}/{m['pod']}/{m['container']} follow={request.query.get('follow')}\n"
        return web.Response(text=text)

    async def exec(self, request):
        ws = web.WebSocketResponse(protocols=["v5.channel.k8s.io", "v4.channel.k8s.io"])
        await ws.prepare(request)
        command = " ".join(request.query.getall("command", []))
        await ws.send_bytes(b"\x01" + f"ran: {command}\n".encode())
        await ws.send_bytes(b"\x03" + json.dumps({"metadata": {}, "status": "Success"}).encode())
        await ws.close()
        return ws

    def stop(self):
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def test_logs_and_exec_are_proxied_to_the_kubelet(env):
    need(os.path.exists("/usr/bin/kubectl"), "needs /usr/bin/kubectl")
    kubelet = StandInKubelet()
    try:
        a = env["a"]
        call(a, "POST", "/api/v1/nodes", {"metadata": {"name": "kn"}, "status": {
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port}}}})
        call(a, "POST", "/api/v1/namespaces/default/pods", {
            "metadata": {"name": "lp"}, "spec": {"nodeName": "kn", "containers": [
                {"name": "main", "image": "busybox"}]}})
        kubeconfig = os.path.join(env["work"], "kubeconfig-http")
        with open(kubeconfig, "w") as fh:
            json.dump({"apiVersion": "v1", "kind": "Config", "current-context": "c",
                       "clusters": [{"name": "c", "cluster": {"server": a}}],
                       "users": [{"name": "u", "user": {}}],
                       "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]},
                      fh)

        def kubectl(*args):
            return subprocess.run(["/usr/bin/kubectl", "--kubeconfig", kubeconfig,
                                   "--cache-dir", os.path.join(env["work"], "cache"), *args],
                                  capture_output=True, text=True, timeout=30,
                                  env={"HOME": env["work"]})
        logs = kubectl("logs", "lp")
        assert logs.stdout == "log of default/lp/main follow=None\n", logs.stderr
        assert "follow=true" in kubectl("logs", "-f", "lp").stdout
        ran = kubectl("exec", "lp", "--", "echo", "hi")
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "ran: echo hi\n"
    finally:
        kubelet.stop()


def test_finalizers_hold_deletion_until_removed(env):
    a = env["a"]
    body = cm("held")
    body["metadata"]["finalizers"] = ["example.com/hold"]
    call(a, "POST", "/api/v1/namespaces/default/configmaps", body)
    code, obj = call(a, "DELETE", "/api/v1/namespaces/default/configmaps/held")
    assert code == 200 and obj["metadata"]["deletionTimestamp"]
    code, obj = call(a, "GET", "/api/v1/namespaces/default/configmaps/held")
    assert code == 200
    call(a, "PATCH", "/api/v1/namespaces/default/configmaps/held",
         {"metadata": {"finalizers": None}}, "application/merge-patch+json")
    code, _ = call(a, "GET", "/api/v1/namespaces/default/configmaps/held")
    assert code == 404


def test_eviction_and_delete_collection(env):
    a = env["a"]
    call(a, "POST", "/api/v1/namespaces/default/pods", {
        "metadata": {"name": "ev", "labels": {"grp": "x"}},
        "spec": {"containers": [{"name": "c", "image": "i"}]}})
    code, status = call(a, "POST", "/api/v1/namespaces/default/pods/ev/eviction", {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "ev"}})
    assert code == 201 and status["status"] == "Success"
    assert call(a, "GET", "/api/v1/namespaces/default/pods/ev")[0] == 404  # unscheduled: gone
    for n in range(3):
        call(a, "POST", "/api/v1/namespaces/default/configmaps", cm(f"dc{n}", {"grp": "dc"}))
    code, deleted = call(a, "DELETE", "/api/v1/namespaces/default/configmaps?labelSelector=grp%3Ddc")
    assert code == 200 and len(deleted["items"]) == 3
    _, left = call(a, "GET", "/api/v1/namespaces/default/configmaps?labelSelector=grp%3Ddc")
    assert left["items"] == []


def test_list_pagination_with_continue(env):
    a = env["a"]
    call(a, "POST", "/api/v1/namespaces", {"metadata": {"name": "pages"}})
    for n in range(5):
        call(a, "POST", "/api/v1/namespaces/pages/configmaps", cm(f"c{n}"))
    names, token, pages = [], "", 0
    while True:
        _, page = call(a, "GET", f"/api/v1/namespaces/pages/configmaps?limit=2&continue={token}")
        names += [i["metadata"]["name"] for i in page["items"]]
        pages += 1
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert names == [f"c{n}" for n in range(5)] and pages == 3


def test_a_list_larger_than_grpcs_default_message_limit(env):
    """etcd answers a 5 MiB range in one message; gRPC's default cap is 4 MiB."""
    a = env["a"]
    call(a, "POST", "/api/v1/namespaces", {"metadata": {"name": "big"}})
    blob = "x" * (900 * 1024)
    for n in range(6):
        status, _ = call(a, "POST", "/api/v1/namespaces/big/configmaps",
                         cm(f"c{n}", data={"blob": blob}))
        assert status == 201
    status, listed = call(a, "GET", "/api/v1/namespaces/big/configmaps")
    assert status == 200, listed
    assert [i["metadata"]["name"] for i in listed["items"]] == [f"c{n}" for n in range(6)]


def test_system_namespaces_cannot_be_deleted(env):
    code, status = call(env["a"], "DELETE", "/api/v1/namespaces/kube-system")
    assert code == 403 and "may not be deleted" in status["message"]


def test_waits_for_etcd_and_answers_503_while_it_is_gone(tmp_path):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    port = testing.free_port()
    with testing.run_apiserver(str(tmp_path), f"http://127.0.0.1:{port}",
                               wait_ready=False) as api:
        ready = f"{api.url}/readyz"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(ready, timeout=5)
        assert err.value.code == 503
        with testing.run_etcd(str(tmp_path), testing.etcd_command_from_env(), client_port=port):
            testing.wait_for(lambda: testing._http_ok(ready), 30, "readiness once etcd is up")
            assert call(api.url, "GET", "/api/v1/namespaces/default")[0] == 200
        code, status = call(api.url, "GET", "/api/v1/namespaces/default/configmaps")
        assert (code, status["reason"]) == (503, "ServiceUnavailable")


def test_periodic_compaction_expires_old_resource_versions(tmp_path):
    need(os.path.exists(testing.ETCD), "needs /usr/bin/etcd (Debian etcd-server)")
    with testing.run_etcd(str(tmp_path), testing.etcd_command_from_env()) as etcd, \
            testing.run_apiserver(str(tmp_path), etcd.endpoint,
                                  ["--etcd-compaction-interval", "1s"]) as api:
        _, created = call(api.url, "POST", "/api/v1/namespaces/default/configmaps", cm("old"))
        old_rv = created["metadata"]["resourceVersion"]

        def expired():
            call(api.url, "PATCH", "/api/v1/namespaces/default/configmaps/old",
                 {"data": {"t": str(time.monotonic())}}, "application/merge-patch+json")
            token = base64.b64encode(json.dumps(
                {"rv": int(old_rv), "start": "/registry/configmaps/default/"}).encode()).decode()
            code, _ = call(api.url, "GET", f"/api/v1/namespaces/default/configmaps?limit=1"
                                           f"&continue={token}")
            return code == 410
        testing.wait_for(expired, 20, "the compactor to compact away the old revision")
