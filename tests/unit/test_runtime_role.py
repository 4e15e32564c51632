"""The runtime role's tasks rendered as a deploy renders them, and its image unpacking
script run on local directories (new image, unchanged image, changed image)."""

from __future__ import annotations

import json
import shlex
import subprocess
import tarfile

import pytest

from agents.runtime.__main__ import parse_args
from labctl.engine.templating import LazyVars, template
from tests.unit.role_rendering import load_play, render_template_task, task_variables

pytestmark = pytest.mark.unit

INVENTORY = """
all:
  vars: {lab_name: rt, lab_network: 10.9.1.0/24}
  children:
    control_plane:
      hosts:
        cp-1: {ansible_host: 10.9.1.11}
    etcd:
      children:
        control_plane:
    workers:
      hosts:
        worker-1: {ansible_host: 10.9.1.21}
      vars:
        lab_container_images_dir: /cache/containers/abc
"""


def named(play, name):
    return next(t for t in play.tasks if t.name == name)


def rendered(task, variables, item):
    raw = dict(variables.raw, item=item)
    return template(task.args, LazyVars(raw))


def test_images_come_from_labctl_s_build_or_the_user_s_directory(tmp_path):
    play, _, variables = task_variables(tmp_path, INVENTORY, "workers", "runtime", "worker-1",
                                        module="copy")
    push = named(play, "push the images' tarballs")
    images = variables["runtime_images"]
    assert [(i["name"], i["tag"]) for i in images] == [("lab/busybox", "latest"), ("lab/python", "latest")]
    args = rendered(push, variables, images[0])
    assert args["src"] == "/cache/containers/abc/lab/busybox/latest/rootfs.tar.gz"
    assert args["dest"] == "/var/lib/lab/images/.incoming/lab_busybox_latest.tar.gz"
    own = {"name": "my/app", "tag": "1.0", "src": "/home/me/img"}
    assert rendered(push, variables, own)["src"] == "/home/me/img/rootfs.tar.gz"
    manifest = rendered(named(play, "push the images' manifests"), variables, own)
    assert manifest["src"] == "/home/me/img/image.json"


def test_the_role_runs_on_workers_and_makes_cgroups_writable(tmp_path):
    inventory, play = load_play(tmp_path, INVENTORY, "workers", "runtime")
    assert inventory.hosts_matching(play.hosts) == ["worker-1"]
    unit = named(play, "make the cgroup controllers writable now and at every boot")
    assert unit.args["enabled"] is True and unit.args["state"] == "started"


def test_containers_are_ended_at_poweroff_after_the_kubelet_stops(tmp_path):
    play, _, variables = task_variables(tmp_path, INVENTORY, "workers", "runtime", "worker-1")
    task = named(play, "install the unit that ends the containers at poweroff")
    unit = render_template_task("runtime", task, variables)
    assert "Before=lab-kubelet.service" in unit.splitlines()  # so it stops after it
    stop = next(x for x in unit.splitlines() if x.startswith("ExecStop="))
    argv = shlex.split(stop.removeprefix("ExecStop="))
    assert argv[:3] == ["/opt/lab/venv/bin/python", "-m", "agents.runtime"]
    args = parse_args(argv[3:])
    assert (args.command, args.grace, args.cgroup_parent) == ("shutdown", 2.0, "/lab-containers")
    started = named(play, "end the containers at every poweroff")
    assert started.args["state"] == "started" and started.args["enabled"] is True
    assert not any(t.args.get("state") == "restarted" for t in play.tasks
                   if t.args.get("name") == "lab-containers-stop.service")


def write_image(incoming, name, tag, content: bytes, image_id: str):
    flat = f"{name.replace('/', '_')}_{tag}"
    tree = incoming / "tree"
    tree.mkdir(exist_ok=True)
    (tree / "hello").write_bytes(content)
    with tarfile.open(incoming / f"{flat}.tar.gz", "w:gz") as tar:
        tar.add(tree / "hello", arcname="hello")
    (incoming / f"{flat}.json").write_text(json.dumps({"id": image_id}))


def test_unpack_script_unpacks_new_skips_unchanged_and_swaps_changed_images(tmp_path):
    store = tmp_path / "store"
    incoming = store / ".incoming"
    incoming.mkdir(parents=True)
    play, _, variables = task_variables(tmp_path, INVENTORY + "\n", "workers", "runtime",
                                        "worker-1", module="shell")
    unpack = named(play, "unpack new or changed images into the store")
    item = {"name": "lab/busybox", "tag": "latest"}
    raw = dict(variables.raw, item=item, runtime_image_store=str(store))
    script = template(unpack.args["cmd"], LazyVars(raw))

    def run() -> str:
        done = subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout

    write_image(incoming, "lab/busybox", "latest", b"v1", "sha256:1")
    assert run() == "unpacked lab/busybox:latest\n"
    image = store / "lab/busybox/latest"
    assert (image / "rootfs/hello").read_bytes() == b"v1"
    assert json.loads((image / "image.json").read_text()) == {"id": "sha256:1"}
    assert run() == ""  # unchanged: nothing to do (the task reports no change)
    write_image(incoming, "lab/busybox", "latest", b"v2", "sha256:2")
    assert run() == "unpacked lab/busybox:latest\n"
    assert (image / "rootfs/hello").read_bytes() == b"v2"
    assert sorted(p.name for p in (store / "lab/busybox").iterdir()) == ["latest"]
