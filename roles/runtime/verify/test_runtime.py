"""The runtime role: runc, the image store with the lab's images, cgroup controllers
runc can write, and a real container run on the node through ``python -m
agents.runtime`` (a throwaway sandbox and container, removed afterwards).

Paths come from the role's variables (``hostvars``).
"""

import json

from labctl.verify.checks import assert_service_running_and_enabled


def runtime_cli(hostvars, *args):
    return [hostvars["runtime_python"], "-m", "agents.runtime",
            "--image-store", hostvars["runtime_image_store"], *args]


def run(host, argv):
    return host.run(" ".join(["%s"] * len(argv)), *argv)


def test_runc_is_installed(host):
    out = host.run("runc --version")
    assert out.rc == 0, f"runc --version failed (exit {out.rc}): {out.stderr.strip()}"
    assert out.stdout.startswith("runc version"), out.stdout


def test_state_and_log_directories_exist(host, hostvars):
    for key in ("runtime_root", "runtime_image_store", "runtime_log_root"):
        assert host.file(hostvars[key]).is_directory, f"{hostvars[key]} ({key}) is missing"


def test_image_store_holds_every_image_of_the_role(host, hostvars):
    out = run(host, runtime_cli(hostvars, "images"))
    assert out.rc == 0, f"listing images failed: {out.stderr.strip()}"
    refs = {json.loads(line)["ref"] for line in out.stdout.splitlines() if line.strip()}
    wanted = {f"{i['name']}:{i['tag']}" for i in hostvars["runtime_images"]}
    assert {"lab/busybox:latest", "lab/python:latest"} <= wanted
    assert wanted <= refs, f"missing from {hostvars['runtime_image_store']}: {sorted(wanted - refs)}"


def test_containers_are_ended_at_poweroff_after_the_kubelet(host):
    assert_service_running_and_enabled(host, "lab-containers-stop.service")
    before = host.check_output("systemctl show -p Before --value lab-containers-stop.service")
    assert "lab-kubelet.service" in before.split(), f"ordered before {before!r}, not the kubelet"


def test_no_cgroup_controller_is_read_only(host):
    mounts = host.file("/proc/self/mountinfo").content_string.splitlines()
    read_only = [m.split()[4] for m in mounts
                 if " - cgroup " in m and "ro" in m.split()[5].split(",")]
    assert not read_only, f"cgroup controllers mounted read-only (runc cannot use them): {read_only}"


def test_a_throwaway_busybox_container_echoes_ok(host, hostvars):
    out = run(host, runtime_cli(hostvars, "run", "lab/busybox", "--", "echo", "ok"))
    assert (out.rc, out.stdout) == (0, "ok\n"), f"exit {out.rc}: {out.stdout!r} {out.stderr.strip()}"


def test_a_container_over_its_memory_limit_is_oom_killed(host, hostvars):
    argv = runtime_cli(hostvars, "run", "--memory", str(16 << 20), "lab/busybox", "--",
                       "dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1")
    out = run(host, argv)
    assert out.rc == 137 and "OOMKilled" in out.stderr, f"exit {out.rc}: {out.stderr.strip()}"


def test_the_python_image_runs_python3(host, hostvars):
    argv = runtime_cli(hostvars, "run", "lab/python", "--", "python3", "-c",
                       "import http.server, sys; print(sys.version_info[:2])")
    out = run(host, argv)
    assert out.rc == 0 and out.stdout.startswith("(3, "), f"exit {out.rc}: {out.stdout} {out.stderr}"


def test_cpu_and_memory_limits_reach_the_container_s_cgroup(host, hostvars):
    # runc mounts the container's own cgroup at /sys/fs/cgroup: v1 per controller
    # (nspawn hosts on a hybrid machine), v2 one directory (VMs).
    show = ("cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/memory/memory.limit_in_bytes"
            " 2>/dev/null || (cut -d' ' -f1 /sys/fs/cgroup/cpu.max; cat /sys/fs/cgroup/memory.max)")
    argv = runtime_cli(hostvars, "run", "--cpu", "250", "--memory", str(32 << 20), "lab/busybox",
                       "--", "sh", "-c", show)
    out = run(host, argv)
    assert out.rc == 0, f"exit {out.rc}: {out.stderr.strip()}"
    assert out.stdout.split() == ["25000", str(32 << 20)], f"cpu quota, memory limit: {out.stdout!r}"
