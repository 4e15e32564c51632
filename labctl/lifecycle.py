"""The lab lifecycle: ``up`` (provision, wait, deploy, verify), ``down`` and ``status``.

``up`` converges: it compares the inventory with the host records in the lab's state
directory (``plan_hosts``, pure), removes hosts no longer wanted, creates the missing
ones in parallel (each record saved the moment its host exists), starts stopped ones,
waits until every host is ready, then deploys the site. Interrupting it leaves records
for everything created, so ``up`` resumes and ``down`` removes.

``down`` removes everything the records and ``lab.json`` name: hosts (domains,
overlays, containers, mounts, processes), the lab network/bridge, known_hosts entries,
and, unless ``keep_state``, the lab directory itself (``keep_state`` keeps key and PKI).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from ipaddress import IPv4Network, ip_network
from pathlib import Path
from typing import Any

from labctl import hostrecords
from labctl.errors import LabError
from labctl.providers import get_provider
from labctl.providers.base import HostRecord, HostSpec, NetworkSpec, Provider
from labctl.providers.readiness import (
    BOOTED,
    LOGGED_IN,
    RUNNING,
    SSH_BANNER,
    StepTimeouts,
    Target,
    interpret_system_state,
    read_ssh_banner,
    wait_ready,
)
from labctl.state import LabState, labctl_home

LAB_FILE = "lab.json"
LOCK_FILE = ".lock"
MAX_PARALLEL = 16

Progress = Callable[[str], None]


def print_progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- pure parts


def bridge_name(lab_name: str) -> str:
    """A Linux bridge name (<= 15 chars) unique per lab: ``lc-<name>`` or ``lc-<prefix><hash>``."""
    safe = re.sub(r"[^a-z0-9-]", "", lab_name.lower())
    if safe == lab_name and len(safe) <= 12:
        return f"lc-{safe}"
    digest = hashlib.sha256(lab_name.encode()).hexdigest()[:5]
    return f"lc-{safe[:6]}{digest}"


def network_spec(lab_name: str, network: IPv4Network, gateway: str) -> NetworkSpec:
    return NetworkSpec(lab_name=lab_name, cidr=network, gateway=str(gateway), bridge=bridge_name(lab_name))


def host_fingerprint(provider: str, host: Any) -> dict[str, Any]:
    """What, when changed in the inventory, means the host must be recreated."""
    return {
        "provider": provider,
        "address": str(host.address),
        "cpus": int(host.cpus),
        "memory_mb": int(host.memory_mb),
        "libvirt_uri": (host.vars or {}).get("libvirt_uri") if provider == "libvirt" else None,
    }


@dataclass(frozen=True)
class Plan:
    create: tuple[str, ...] = ()  # wanted, no record
    recreate: tuple[str, ...] = ()  # record exists but host is missing, half-made or changed
    start: tuple[str, ...] = ()  # exists, stopped
    keep: tuple[str, ...] = ()  # exists, running, unchanged
    remove: tuple[str, ...] = ()  # record exists, no longer in the inventory

    @property
    def changes(self) -> bool:
        return bool(self.create or self.recreate or self.start or self.remove)


def plan_hosts(
    wanted: dict[str, dict[str, Any]],
    records: dict[str, HostRecord],
    states: dict[str, str],
) -> Plan:
    """Decide what ``up`` does to each host (pure).

    ``wanted``: host name -> fingerprint (inventory order); ``records``: saved records;
    ``states``: provider state of each recorded host ('running'/'stopped'/'missing').
    """
    create, recreate, start, keep = [], [], [], []
    for name, fingerprint in wanted.items():
        record = records.get(name)
        if record is None:
            create.append(name)
        elif (
            record.details.get("pending")
            or record.details.get("spec") != fingerprint
            or states.get(name, "missing") == "missing"
        ):
            recreate.append(name)
        elif states[name] == "stopped":
            start.append(name)
        else:
            keep.append(name)
    remove = [name for name in records if name not in wanted]
    return Plan(tuple(create), tuple(recreate), tuple(start), tuple(keep), tuple(sorted(remove)))


def format_status_table(rows: list[dict[str, Any]]) -> str:
    headers = ["HOST", "PROVIDER", "STATE", "ADDRESS", "GROUPS"]
    table = [
        [r["host"], r["provider"], r["state"], r["address"], ",".join(r["groups"])] for r in rows
    ]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in table]
    return "\n".join(lines)


# ---------------------------------------------------------------- lab state files


@dataclass(frozen=True)
class LabInfo:
    """What ``down`` needs to know about a lab even when its inventory is gone."""

    name: str
    provider: str
    network: NetworkSpec
    inventory: str | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "name": self.name,
                "provider": self.provider,
                "network": {
                    "cidr": str(self.network.cidr),
                    "gateway": self.network.gateway,
                    "bridge": self.network.bridge,
                },
                "inventory": self.inventory,
            },
            indent=2,
        ) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> LabInfo:
        try:
            data = json.loads(text)
            net = data["network"]
            return cls(
                name=data["name"],
                provider=data["provider"],
                network=NetworkSpec(data["name"], ip_network(net["cidr"]), net["gateway"], net["bridge"]),
                inventory=data.get("inventory"),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise LabError(f"{source}: unreadable lab file ({exc})") from exc


def save_lab_info(state: LabState, info: LabInfo) -> None:
    path = state.root / LAB_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(info.to_json())
    os.replace(tmp, path)


def load_lab_info(state: LabState) -> LabInfo | None:
    path = state.root / LAB_FILE
    try:
        return LabInfo.from_json(path.read_text(), str(path))
    except FileNotFoundError:
        return None


@contextlib.contextmanager
def lab_lock(state: LabState) -> Iterator[None]:
    """One lifecycle command per lab at a time."""
    state.root.mkdir(parents=True, exist_ok=True)
    with (state.root / LOCK_FILE).open("w") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise LabError(
                f"lab {state.name} is busy: another labctl up/down holds {state.root / LOCK_FILE}"
            ) from exc
        yield


def lab_names(home: Path | None = None) -> list[str]:
    labs = (home or labctl_home()) / "labs"
    return sorted(p.name for p in labs.iterdir() if p.is_dir()) if labs.is_dir() else []


# ---------------------------------------------------------------- providers


class Providers:
    """Provider instances of one lab, created on first use (a lab may hold records of two)."""

    def __init__(self, state: LabState, factory=get_provider):
        self.state = state
        self._factory = factory
        self._made: dict[str, Provider] = {}

    def __call__(self, name: str) -> Provider:
        if name not in self._made:
            self._made[name] = self._factory(name, self.state.root)
        return self._made[name]

    def close(self) -> None:
        for provider in self._made.values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()


def _parallel(fn, items: list, workers: int = MAX_PARALLEL) -> dict[Any, BaseException | Any]:
    """Run ``fn(item)`` for every item in threads; return item -> result or exception.

    On Ctrl-C the running calls still finish (each saves its own record), then the
    interrupt propagates.
    """
    out: dict[Any, Any] = {}
    if not items:
        return out
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        futures = {item: pool.submit(fn, item) for item in items}
        try:
            for item, future in futures.items():
                try:
                    out[item] = future.result()
                except Exception as exc:
                    out[item] = exc
        except KeyboardInterrupt:
            pool.shutdown(wait=True, cancel_futures=True)  # calls under way finish first
            raise
    return out


def _raise_failures(what: str, results: dict[Any, Any]) -> None:
    failures = {k: v for k, v in results.items() if isinstance(v, BaseException)}
    if failures:
        lines = [f"{what} failed for {len(failures)} host(s):"]
        lines += [f"  {name}: {exc}" for name, exc in sorted(failures.items())]
        raise LabError("\n".join(lines))


def _forget_host_key(state: LabState, address: str) -> None:
    if not state.known_hosts.exists():
        return
    from labctl.sshkeys import KnownHosts, host_alias

    KnownHosts(state.known_hosts).forget(host_alias(address))


def _destroy_host(providers: Providers, state: LabState, record: HostRecord, progress) -> None:
    try:
        providers(record.provider).destroy(record)
    except LabError:
        if not record.details.get("pending"):
            raise
        # a record saved just before an interrupted create: the provider may not know it
        progress(f"{record.name}: could not clean up a half-created host; check by hand")
    _forget_host_key(state, record.address)
    hostrecords.remove(state.hosts_dir, record.name)


# ---------------------------------------------------------------- readiness probes


def readiness_probes(providers: Providers, state: LabState, records: dict[str, HostRecord]):
    """The real probes: provider state, SSH banner, login (pins the host key), systemd."""
    from labctl.connection import Connection

    def running(target: Target, budget: float) -> str:
        record = records[target.name]
        current = providers(record.provider).state(record)
        if current != "running":
            raise RuntimeError(f"host is {current}")
        return ""

    def banner(target: Target, budget: float) -> str:
        return read_ssh_banner(target.address, 22, budget)

    def connection(target: Target, budget: float):
        conn = target.context.get("connection")
        if conn is None:
            conn = Connection(
                target.name,
                target.address,
                key_path=state.private_key,
                known_hosts=state.known_hosts,
                learn_host_key=True,
                connect_timeout=max(1.0, min(budget, 10.0)),
            )
            target.context["connection"] = conn
        return conn

    def logged_in(target: Target, budget: float) -> str:
        result = connection(target, budget).run("true", timeout=budget)
        if result.rc != 0:
            raise RuntimeError(f"`true` exited {result.rc}: {result.stderr.strip()[:200]}")
        return ""

    def booted(target: Target, budget: float) -> str:
        conn = connection(target, budget)
        result = conn.run("systemctl is-system-running --wait", timeout=budget)
        ok, state_name = interpret_system_state(result.rc, result.stdout)
        if not ok:
            raise RuntimeError(f"systemd is {state_name}")
        if state_name == "degraded":
            failed = conn.run("systemctl --failed --plain --no-legend --no-pager", timeout=budget)
            units = [line.split()[0] for line in failed.stdout.splitlines() if line.strip()]
            return "degraded: failed units " + (", ".join(units) or "unknown")
        return ""

    return {RUNNING: running, SSH_BANNER: banner, LOGGED_IN: logged_in, BOOTED: booted}


def _close_connections(targets: list[Target]) -> None:
    for target in targets:
        conn = target.context.pop("connection", None)
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()


# ---------------------------------------------------------------- up


@dataclass
class UpOptions:
    deploy: bool = True
    verify: bool = True
    site: Path | None = None
    timeouts: StepTimeouts = field(default_factory=StepTimeouts)
    deploy_options: Any = None
    progress: Progress | None = print_progress


@dataclass
class UpResult:
    lab: str
    plan: Plan
    phases: dict[str, float] = field(default_factory=dict)  # seconds per phase
    ready_at: dict[str, float] = field(default_factory=dict)  # host -> seconds since start
    timeline: dict[str, dict[str, float]] = field(default_factory=dict)  # host -> step -> s
    deployed: bool | None = None  # None: skipped
    deploy_stats: dict[str, Any] | None = None  # host -> {"changed": n, ...} from the engine
    verified: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lab": self.lab,
            "created": list(self.plan.create + self.plan.recreate),
            "started": list(self.plan.start),
            "kept": list(self.plan.keep),
            "removed": list(self.plan.remove),
            "phases": {k: round(v, 3) for k, v in self.phases.items()},
            "ready_at": {k: round(v, 3) for k, v in self.ready_at.items()},
            "timeline": self.timeline,
            "deployed": self.deployed,
            "deploy_stats": self.deploy_stats,
            "verified": self.verified,
        }


def up(inv, options: UpOptions | None = None, *, provider_factory=get_provider) -> UpResult:
    """Provision the inventory's hosts, wait for them, deploy the site; converge on re-runs."""
    options = options or UpOptions()
    progress = options.progress or (lambda _line: None)
    t0 = time.monotonic()
    phases: dict[str, float] = {}
    mark = [t0]

    def phase(name: str) -> None:
        now = time.monotonic()
        phases[name] = now - mark[0]
        mark[0] = now

    state = LabState.for_lab(inv.lab_name).ensure()
    providers = Providers(state, provider_factory)
    try:
        result = _up_locked(inv, options, state, providers, progress, phases, phase, t0)
    finally:
        providers.close()
    phases["total"] = time.monotonic() - t0
    return result


def _up_locked(inv, options, state, providers, progress, phases, phase, t0) -> UpResult:
    with lab_lock(state):
        from labctl.sshkeys import ensure_keypair

        public_key = ensure_keypair(state.private_key)
        net = network_spec(inv.lab_name, inv.network, inv.gateway)
        save_lab_info(state, LabInfo(inv.lab_name, inv.provider, net, str(getattr(inv, "path", "") or "")))
        from labctl.images import ensure_base_image

        ensure_base_image(progress=progress)
        phase("image")

        provider = providers(inv.provider)
        provider.ensure_network(net)
        phase("network")

        records = hostrecords.load_all(state.hosts_dir)
        states = {
            name: providers(rec.provider).state(rec) if not rec.details.get("pending") else "missing"
            for name, rec in records.items()
        }
        wanted = {name: host_fingerprint(inv.provider, host) for name, host in inv.hosts.items()}
        plan = plan_hosts(wanted, records, states)
        result = UpResult(inv.lab_name, plan, phases)

        removed = _parallel(lambda n: _destroy_host(providers, state, records[n], progress), list(plan.remove))
        for name in plan.remove:
            progress(f"{name}: removed (no longer in the inventory)")
        _raise_failures("removing hosts", removed)
        phase("remove")

        def make(name: str) -> HostRecord:
            old = records.get(name)
            if old is not None:
                _destroy_host(providers, state, old, progress)
            host = inv.hosts[name]
            spec = HostSpec(
                name=name,
                address=str(host.address),
                network=net,
                cpus=int(host.cpus),
                memory_mb=int(host.memory_mb),
                public_key=public_key,
                groups=tuple(host.groups),
                vars=dict(host.vars or {}),
            )
            extra = {"spec": wanted[name], "groups": list(host.groups)}
            _forget_host_key(state, spec.address)  # a new host has a new host key
            hostrecords.save(
                state.hosts_dir,
                HostRecord(name, inv.provider, spec.address, {"pending": True, **extra}),
            )
            record = provider.create(spec)
            record.details.update(extra)
            hostrecords.save(state.hosts_dir, record)
            return record

        made = _parallel(make, list(plan.create + plan.recreate))
        for name in plan.start:
            made[name] = _start(providers, records[name])
        _raise_failures("creating hosts", made)
        records = hostrecords.load_all(state.hosts_dir)
        phase("create")

        targets = [
            Target(name, records[name].address, providers(records[name].provider).console_log(records[name]))
            for name in inv.hosts
        ]
        try:
            probes = readiness_probes(providers, state, records)
            result.ready_at = wait_ready(
                targets, probes, options.timeouts, progress=progress, origin=t0,
                timeline=result.timeline,
            )
        finally:
            _close_connections(targets)
        phase("ready")

        if options.deploy:
            with _pool(inv, state) as pool:  # deploy and verify share the logins
                result.deploy_stats = _deploy(inv, pool, options, progress)
                result.deployed = None if result.deploy_stats is None else True
                phase("deploy")
                if options.verify and result.deployed:
                    result.verified = _verify(inv, pool, options, progress)
                    phase("verify")
    return result


def _start(providers: Providers, record: HostRecord) -> HostRecord:
    return providers(record.provider).start(record)


def default_site(inv) -> Path | None:
    """``site.yml`` beside the inventory, above its directory, or in the working directory."""
    inv_path = Path(getattr(inv, "path", "") or ".").resolve()
    for candidate in (inv_path.parent / "site.yml", inv_path.parent.parent / "site.yml", Path("site.yml")):
        if candidate.is_file():
            return candidate
    return None


def _site_has_plays(site: Path) -> bool:
    import yaml

    try:
        data = yaml.safe_load(site.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"{site}: cannot read the site ({exc})") from exc
    return isinstance(data, list) and len(data) > 0


def _pool(inv, state: LabState):
    from labctl.connection import ConnectionPool

    return ConnectionPool(
        {name: str(host.address) for name, host in inv.hosts.items()},
        key_path=state.private_key,
        known_hosts=state.known_hosts,
    )


def _deploy(inv, pool, options: UpOptions, progress: Progress) -> dict | None:
    """Apply the site; return the engine's per-host stats, or None when skipped."""
    site = options.site or default_site(inv)
    if site is None or not _site_has_plays(site):
        progress("deploy: skipped (no plays in site.yml)")
        return None
    from labctl.engine import DeployOptions, deploy

    progress(f"deploy: {site}")
    # stdout stays for `up --json`
    run = deploy(inv, pool, site, options.deploy_options or DeployOptions(out=sys.stderr))
    if not run.ok:
        raise LabError(f"deploying {site} failed; see the output above, fix, and run `labctl up` again")
    return dict(run.stats)


def _verify(inv, pool, options: UpOptions, progress: Progress) -> bool | None:
    """Run each applied role's ``verify/`` testinfra suite (``labctl.verify``); None: none."""
    site = options.site or default_site(inv)
    if site is None:
        progress("verify: skipped (no site.yml)")
        return None
    from labctl import hostpower
    from labctl.verify import VerifyOptions, verify

    # `up` holds the lab lock: the smoke test's stop/start of hosts must not take it again
    power = (lambda h: hostpower.stop_hosts(inv.lab_name, [h], progress=progress, already_locked=True),
             lambda h: hostpower.start_hosts(inv.lab_name, [h], progress=progress, already_locked=True))
    outcome = verify(inv, pool, site, VerifyOptions(out=sys.stderr, host_power=power))
    if not outcome.roles:
        return None
    if not outcome.ok:
        raise LabError(
            "verification failed; see the checks above (`labctl verify -i INV` runs them again)"
        )
    return True


# ---------------------------------------------------------------- down


@dataclass
class DownResult:
    lab: str
    removed: list[str] = field(default_factory=list)
    seconds: float = 0.0


def down(lab_name: str, *, keep_state: bool = False, inv=None, progress: Progress | None = print_progress,
         provider_factory=get_provider) -> DownResult:
    """Remove every host, the network and (unless ``keep_state``) the lab's state."""
    progress = progress or (lambda _line: None)
    t0 = time.monotonic()
    state = LabState.for_lab(lab_name)
    result = DownResult(lab_name)
    if not state.root.exists():
        progress(f"lab {lab_name}: nothing to remove")
        return result
    providers = Providers(state, provider_factory)
    with lab_lock(state):
        records = hostrecords.load_all(state.hosts_dir)
        outcome = _parallel(lambda n: _destroy_host(providers, state, records[n], progress), list(records))
        _raise_failures("removing hosts", outcome)
        result.removed = sorted(records)
        for name in result.removed:
            progress(f"{name}: removed")
        info = load_lab_info(state)
        if info is None and inv is not None:
            info = LabInfo(lab_name, inv.provider, network_spec(lab_name, inv.network, inv.gateway))
        if info is not None:
            used = {info.provider} | {r.provider for r in records.values()}
            for name in sorted(used):
                providers(name).destroy_network(info.network)
        providers.close()
        if keep_state:
            _refuse_if_mounted(state.root)
            keep = {state.ssh_dir, state.pki_dir, state.root / LOCK_FILE}
            for child in state.root.iterdir():
                if child not in keep:
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
            state.known_hosts.unlink(missing_ok=True)
    if not keep_state:
        _refuse_if_mounted(state.root)
        shutil.rmtree(state.root, ignore_errors=True)
    result.seconds = time.monotonic() - t0
    return result


def mounts_under(root: Path, mountinfo: str) -> list[str]:
    """Mount points at or below ``root`` in /proc/self/mountinfo text (pure)."""
    prefix = str(root).rstrip("/") + "/"
    points = []
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 4:
            point = fields[4].replace("\\040", " ")
            if point == str(root) or point.startswith(prefix):
                points.append(point)
    return points


def _refuse_if_mounted(root: Path) -> None:
    """Never delete a lab directory with something still mounted in it: the delete would
    walk into a host's root filesystem."""
    points = mounts_under(root, Path("/proc/self/mountinfo").read_text())
    if points:
        raise LabError(
            f"not removing {root}: still mounted there: {', '.join(points)} "
            "(a host without a record?); stop its processes, unmount, then run `labctl down` again"
        )


# ---------------------------------------------------------------- status


def status(lab_name: str, inv=None, *, provider_factory=get_provider) -> list[dict[str, Any]]:
    """One row per host: recorded hosts with their live state, plus inventory hosts not created."""
    state = LabState.for_lab(lab_name)
    records = hostrecords.load_all(state.hosts_dir)
    providers = Providers(state, provider_factory)
    rows = []
    try:
        for name, record in records.items():
            live = "creating" if record.details.get("pending") else providers(record.provider).state(record)
            groups = record.details.get("groups") or []
            if inv is not None and name in inv.hosts:
                groups = list(inv.hosts[name].groups)
            rows.append(
                {"host": name, "provider": record.provider, "state": live,
                 "address": record.address, "groups": list(groups)}
            )
        if inv is not None:
            for name, host in inv.hosts.items():
                if name not in records:
                    rows.append(
                        {"host": name, "provider": inv.provider, "state": "absent",
                         "address": str(host.address), "groups": list(host.groups)}
                    )
    finally:
        providers.close()
    return rows


def find_record(lab_name: str, host: str) -> HostRecord:
    state = LabState.for_lab(lab_name)
    record = hostrecords.load(state.hosts_dir, host)
    if record is None:
        known = ", ".join(hostrecords.load_all(state.hosts_dir)) or "none"
        raise LabError(f"lab {lab_name} has no host {host!r} (hosts: {known}); run `labctl up` first")
    return record
