"""bench/up: hosts-only ``labctl up`` and ``down``, timed per phase and per readiness step.

Scenarios: 3 and 10 nspawn hosts, 3 libvirt VMs. Each runs in a throwaway LABCTL_HOME
whose images/ links to the shared image cache, so the image is built at most once.

    .venv/bin/python bench/up/run.py [--nspawn 3,10] [--vms 3] [--out bench/results/up.json]

Targets (from the issue): 3 nspawn hosts SSH-ready <= 3 s, 10 <= 8 s; 3 TCG VMs <= 40 s;
down <= 5 s. "SSH-ready" is when the last host showed its SSH banner; "ready" adds
login and systemd finishing its boot.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labctl import lifecycle  # noqa: E402
from labctl.providers.readiness import SSH_BANNER, StepTimeouts  # noqa: E402
from labctl.state import images_dir  # noqa: E402

TARGETS = {("nspawn", 3): 3.0, ("nspawn", 10): 8.0, ("libvirt", 3): 40.0}
DOWN_TARGET = 5.0


def free_subnet() -> ipaddress.IPv4Network:
    routes = subprocess.run(["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True).stdout
    used = []
    for line in routes.splitlines():
        for word in line.split()[:2]:
            with contextlib.suppress(ValueError):
                net = ipaddress.IPv4Network(word, strict=False)
                if net.prefixlen > 0:
                    used.append(net)
    for _ in range(500):
        net = ipaddress.IPv4Network(f"10.{random.randint(200, 250)}.{random.randint(0, 255)}.0/24")
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /24")


def inventory(provider: str, count: int, lab: str, cpus: int = 1):
    """An in-memory inventory with the attributes the lifecycle reads."""
    net = free_subnet()
    addresses = list(net.hosts())[1:]
    hosts = {
        f"h{i}": SimpleNamespace(
            address=str(addresses[i]), cpus=cpus, memory_mb=384, vars={},
            groups=("control_plane", "etcd") if i == 0 else ("workers",),
        )
        for i in range(count)
    }
    return SimpleNamespace(
        lab_name=lab, provider=provider, network=net, gateway=str(addresses[0] - 1), hosts=hosts,
        path="", extra_vars={},
    )


def scenario(provider: str, count: int, cpus: int = 1) -> dict:
    return scenario_lab(provider, count, cpus=cpus)


def _logins(lab: str, inv) -> dict:
    """One SSH connection per host of a lab that is up (for ``after_up`` callbacks)."""
    from labctl.connection import Connection
    from labctl.state import LabState

    state = LabState.for_lab(lab)
    return {
        name: Connection(name, host.address, key_path=state.private_key, known_hosts=state.known_hosts)
        for name, host in inv.hosts.items()
    }


def qemu_cpu_seconds(domain: str) -> float:
    """CPU time (user + system) the domain's qemu process has used: unlike wall time,
    it hardly depends on how busy the machine is, so it compares boots across runs."""
    pid = Path(f"/run/libvirt/qemu/{domain}.pid").read_text().strip()
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return round((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), 2)


def scenario_lab(provider: str, count: int, after_up=None, cpus: int = 1) -> dict:
    """Time ``up`` and ``down`` of a throwaway lab; ``after_up(lab_root, connections)``
    runs in between (e.g. to collect boot profiles) and is not part of either time."""
    with tempfile.TemporaryDirectory(prefix="bench-up-", dir="/var/tmp") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        for d in (Path(tmp), home):
            d.chmod(0o711)
        (home / "images").symlink_to(images_dir())
        old_home = os.environ.get("LABCTL_HOME")
        os.environ["LABCTL_HOME"] = str(home)
        lab = f"bu{random.randrange(16**6):06x}"
        inv = inventory(provider, count, lab, cpus)
        options = lifecycle.UpOptions(
            deploy=False, verify=False, progress=None,
            timeouts=StepTimeouts().with_overrides({"ssh-banner": 900, "booted": 600}),
        )
        try:
            t0 = time.monotonic()
            result = lifecycle.up(inv, options)
            up_s = time.monotonic() - t0
            cpu_s = {}
            if provider == "libvirt":
                from labctl.providers.libvirt import domain_name

                cpu_s = {name: qemu_cpu_seconds(domain_name(lab, name)) for name in inv.hosts}
            if after_up is not None:
                conns = _logins(lab, inv)
                try:
                    after_up(home / "labs" / lab, conns)
                finally:
                    for conn in conns.values():
                        conn.close()
        finally:
            t0 = time.monotonic()
            down = lifecycle.down(lab, progress=None)
            down_s = time.monotonic() - t0
            if old_home is None:
                os.environ.pop("LABCTL_HOME", None)
            else:
                os.environ["LABCTL_HOME"] = old_home
        ssh_ready = max(steps[SSH_BANNER] for steps in result.timeline.values())
        target = TARGETS.get((provider, count))
        return {
            "provider": provider,
            "hosts": count,
            "cpus_per_host": cpus,
            "up_s": round(up_s, 3),
            "ssh_ready_s": round(ssh_ready, 3),
            "ready_s": round(max(result.ready_at.values()), 3),
            "down_s": round(down_s, 3),
            "down_removed": len(down.removed),
            "phases": {k: round(v, 3) for k, v in result.phases.items()},
            "timeline": result.timeline,
            "virt_type": _virt_type(provider),
            # qemu CPU seconds per VM when all were ready (TCG: a load-independent cost)
            "qemu_cpu_s": cpu_s or None,
            "target_ssh_ready_s": target,
            "meets_target": None if target is None else ssh_ready <= target,
            "meets_down_target": down_s <= DOWN_TARGET,
        }


def _virt_type(provider: str) -> str | None:
    if provider != "libvirt":
        return None
    from labctl.providers.libvirt import local_kvm_usable

    return "kvm" if local_kvm_usable() else "qemu (TCG)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nspawn", default="3,10", help="host counts for nspawn (comma list, '' for none)")
    parser.add_argument("--vms", default="3", help="VM counts for libvirt (comma list, '' for none)")
    parser.add_argument("--cpus", type=int, default=1, help="virtual CPUs per host (default 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "up.json")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/up needs root", file=sys.stderr)
        return 2
    from labctl.images import ensure_base_image

    ensure_base_image(progress=lambda line: print(f"image: {line}", file=sys.stderr))
    plan = [("nspawn", int(n)) for n in args.nspawn.split(",") if n] + [
        ("libvirt", int(n)) for n in args.vms.split(",") if n
    ]
    runs = []
    for provider, count in plan:
        print(f"== {count} {provider} host(s)", file=sys.stderr)
        run = scenario(provider, count, args.cpus)
        runs.append(run)
        print(
            f"   ssh-ready {run['ssh_ready_s']:.1f}s (target {run['target_ssh_ready_s']}), "
            f"ready {run['ready_s']:.1f}s, up {run['up_s']:.1f}s, down {run['down_s']:.1f}s",
            file=sys.stderr,
        )
    load = os.getloadavg()
    report = {
        "benchmark": "up",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_avg_1_5_15": [round(x, 2) for x in load],
                    "kernel": platform.release()},
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'scenario':<14}{'ssh-ready':>10}{'ready':>8}{'up':>8}{'down':>8}  target", file=sys.stderr)
    for r in runs:
        print(
            f"{r['hosts']:>2} {r['provider']:<11}{r['ssh_ready_s']:>10.1f}{r['ready_s']:>8.1f}"
            f"{r['up_s']:>8.1f}{r['down_s']:>8.1f}  {r['target_ssh_ready_s']}",
            file=sys.stderr,
        )
    print(f"saved {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
