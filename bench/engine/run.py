#!/usr/bin/env python3
"""Benchmark: labctl's role engine vs ansible-playbook, same role, same hosts.

For each size (5 and 20 network-namespace sshd hosts) it applies ``benchrole`` (20
tasks: directories, templates, copies incl. a 200 KiB file, lineinfile, a link,
commands, stat/assert/set_fact, a handler) with

1. ``labctl deploy`` (a fresh process, as a user runs it): first run, then the no-op re-run;
2. the role's paths are removed from the hosts;
3. ``ansible-playbook`` (ansible-core from the venv) in its fairest configuration:
   OpenSSH with ControlMaster/ControlPersist, pipelining, forks=20, facts gathered as
   ours are: first run, then the no-op re-run (its SSH masters are still warm).

Both tools' results are checked (first run: no failure; re-run: changed=0 everywhere)
and the files they leave on a host are compared byte for byte. Needs root.

    sudo .venv/bin/python bench/engine/run.py [--sizes 5,20] [--out bench/results/engine.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from labctl.connection import ConnectionPool  # noqa: E402
from labctl.inventory import load_inventory  # noqa: E402
from labctl.state import LabState  # noqa: E402
from labctl.testing.netns_hosts import NetnsHosts  # noqa: E402

BENCH = ROOT / "bench" / "engine"
SITE = BENCH / "site.yml"
ROLE_ROOT = "/srv/bench"
VENV_BIN = Path(sys.executable).parent

ANSIBLE_CFG = """\
[defaults]
roles_path = {roles}
forks = 20
host_key_checking = True
interpreter_python = /usr/bin/python3
gathering = implicit
retry_files_enabled = False
nocolor = True

[ssh_connection]
pipelining = True
ssh_args = -o ControlMaster=auto -o ControlPersist=300s -o PreferredAuthentications=publickey
control_path_dir = {control_dir}
control_path = %(directory)s/%%C
"""

RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def timed(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - start
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-25:])
        raise SystemExit(f"{' '.join(cmd)} failed (rc {proc.returncode}):\n{tail}")
    return elapsed, proc.stdout


def labctl_stats(stdout: str) -> dict[str, dict[str, int]]:
    return json.loads(stdout)["stats"]


def ansible_stats(stdout: str) -> dict[str, dict[str, int]]:
    return {m[0]: {"ok": int(m[1]), "changed": int(m[2]), "unreachable": int(m[3]), "failed": int(m[4])}
            for m in RECAP_RE.findall(stdout)}


def check(stats: dict[str, dict[str, int]], hosts: int, noop: bool, tool: str) -> None:
    if len(stats) != hosts:
        raise SystemExit(f"{tool}: recap has {len(stats)} hosts, expected {hosts}")
    for host, row in stats.items():
        if row["failed"] or row["unreachable"]:
            raise SystemExit(f"{tool}: {host} failed: {row}")
        if noop and row["changed"]:
            raise SystemExit(f"{tool}: the re-run changed {row['changed']} task(s) on {host}")


def snapshot(farm: NetnsHosts) -> dict[str, tuple[str, str]]:
    """What the role left on the first host: relative path -> (mode, sha of content/link)."""
    import hashlib

    host = farm.hosts[0]
    base = host.upper(ROLE_ROOT)
    out = {}
    for path in sorted(base.rglob("*")):
        rel = str(path.relative_to(base))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_file():
            out[rel] = (oct(path.stat().st_mode & 0o7777), hashlib.sha1(path.read_bytes()).hexdigest())
        else:
            out[rel] = (oct(path.stat().st_mode & 0o7777), "dir")
    return out


def clean_hosts(farm: NetnsHosts) -> None:
    with ConnectionPool({h.name: (h.address, h.port) for h in farm.hosts},
                        key_path=farm.key_path, known_hosts=farm.known_hosts) as pool:
        for h in farm.hosts:
            pool.get(h.name).run(f"rm -rf {ROLE_ROOT}", check=True)


def stop_control_masters(control_dir: Path) -> None:
    """ansible's ControlPersist ssh masters outlive the run: end them explicitly."""
    for sock in control_dir.glob("*"):
        subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "bench"],
                       capture_output=True, timeout=30)


def bench_size(n: int, tmp: Path) -> dict:
    with NetnsHosts(count=n, workdir=tmp / "farm") as farm:
        first = farm.hosts[0].name
        inv_path = farm.write_inventory(
            tmp / "inventory.yml",
            groups={"etcd": [first], "control_plane": [first],
                    "workers": [h.name for h in farm.hosts[1:]] or [first]})
        lab_name = load_inventory(inv_path, {}).lab_name
        home = tmp / "labctl-home"
        state = LabState.for_lab(lab_name, home).ensure()
        shutil.copy(farm.key_path, state.private_key)
        shutil.copy(farm.known_hosts, state.known_hosts)
        env = dict(os.environ, LABCTL_HOME=str(home))
        forks = str(min(n, 20))
        ours = [str(VENV_BIN / "python"), "-m", "labctl", "deploy", "-i", str(inv_path),
                "--site", str(SITE), "--forks", forks, "--json"]
        result: dict = {"hosts": n}
        t_first, out = timed(ours, env, tmp / "labctl-first.log")
        check(labctl_stats(out), n, False, "labctl")
        t_noop, out = timed(ours, env, tmp / "labctl-noop.log")
        check(labctl_stats(out), n, True, "labctl")
        ours_files = snapshot(farm)
        result["labctl"] = {"first_s": round(t_first, 3), "noop_s": round(t_noop, 3)}

        clean_hosts(farm)
        control_dir = tmp / "cp"
        control_dir.mkdir()
        cfg = tmp / "ansible.cfg"
        cfg.write_text(ANSIBLE_CFG.format(roles=BENCH / "roles", control_dir=control_dir))
        aenv = dict(os.environ, ANSIBLE_CONFIG=str(cfg), ANSIBLE_HOME=str(tmp / "ansible-home"),
                    ANSIBLE_LOCAL_TEMP=str(tmp / "ansible-tmp"))
        theirs = [str(VENV_BIN / "ansible-playbook"), "-i", str(inv_path), str(SITE)]
        try:
            a_first, out = timed(theirs, aenv, tmp / "ansible-first.log")
            check(ansible_stats(out), n, False, "ansible-playbook")
            a_noop, out = timed(theirs, aenv, tmp / "ansible-noop.log")
            check(ansible_stats(out), n, True, "ansible-playbook")
        finally:
            stop_control_masters(control_dir)
        their_files = snapshot(farm)
        result["ansible"] = {"first_s": round(a_first, 3), "noop_s": round(a_noop, 3)}
        result["ratio_first"] = round(a_first / t_first, 2)
        result["ratio_noop"] = round(a_noop / t_noop, 2)
        result["same_files"] = ours_files == their_files
        if not result["same_files"]:
            diff = {k: (ours_files.get(k), their_files.get(k)) for k in ours_files.keys() | their_files.keys()
                    if ours_files.get(k) != their_files.get(k)}
            result["file_differences"] = diff
        return result


def ansible_version() -> str:
    out = subprocess.run([str(VENV_BIN / "ansible-playbook"), "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,20")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "engine.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/engine needs root (network namespaces)")
    sizes = [int(s) for s in args.sizes.split(",")]
    results = []
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix=f"bench-engine-{n}-") as tmp:
            print(f"[bench/engine] {n} hosts ...", flush=True)
            load_before = os.getloadavg()[0]
            result = bench_size(n, Path(tmp))
            # the machine is shared: the load says how comparable absolute times are
            result["load_average_1m"] = [round(load_before, 1), round(os.getloadavg()[0], 1)]
            results.append(result)
    doc = {
        "benchmark": "engine",
        "role": "bench/engine/roles/benchrole (20 tasks + 1 handler)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "kernel": platform.release()},
        "ansible": ansible_version(),
        "targets": {"ratio_noop": 5.0, "ratio_first": 3.0},
        "results": results,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(f"{'hosts':>5} | {'labctl first':>12} {'ansible first':>13} {'ratio':>6} | "
          f"{'labctl no-op':>12} {'ansible no-op':>13} {'ratio':>6} | same files")
    for r in results:
        print(f"{r['hosts']:>5} | {r['labctl']['first_s']:>11.2f}s {r['ansible']['first_s']:>12.2f}s "
              f"{r['ratio_first']:>5.1f}x | {r['labctl']['noop_s']:>11.2f}s {r['ansible']['noop_s']:>12.2f}s "
              f"{r['ratio_noop']:>5.1f}x | {r['same_files']}")
    print(f"\nsaved {args.out}")


if __name__ == "__main__":
    main()
