"""Which roles the site applies to which hosts, and which of them have a verify suite.

A role's suite is ``roles/<role>/verify/test_*.py`` (pytest-testinfra modules). The
site is read with the role engine's loader, so plays, ``hosts:`` patterns, role
search paths and meta dependencies mean exactly what they mean to ``labctl deploy``.
``plan_runs`` (pure) then turns suites into "run these files on these hosts".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from labctl.engine.loader import RoleLoader, load_site
from labctl.engine.model import Play
from labctl.errors import LabError

SUITE_DIR = "verify"
SUITE_GLOB = "test_*.py"


@dataclass(frozen=True)
class PlayTarget:
    index: int  # 0-based position of the play in the site
    pattern: str  # the play's ``hosts:``


@dataclass(frozen=True)
class RoleSuite:
    role: str
    path: Path  # the role's directory
    tests: tuple[Path, ...]  # verify/test_*.py, sorted
    plays: tuple[PlayTarget, ...]  # every play that applies the role, in site order

    @property
    def verify_dir(self) -> Path:
        return self.path / SUITE_DIR


@dataclass
class SiteRoles:
    site: Path
    plays: list[Play]
    applied: list[str]  # every role the site applies (dependencies included), first use order
    suites: list[RoleSuite]  # the applied roles that have a verify suite, same order


@dataclass(frozen=True)
class SuiteRun:
    """One role's suite and the hosts it runs on."""

    suite: RoleSuite
    hosts: tuple[str, ...]
    # host -> index of the first play applying the role to it (whose vars the checks see)
    play_of: dict[str, int] = field(default_factory=dict, compare=False)

    @property
    def role(self) -> str:
        return self.suite.role


def suite_files(role_dir: Path) -> tuple[Path, ...]:
    verify_dir = role_dir / SUITE_DIR
    if not verify_dir.is_dir():
        return ()
    return tuple(sorted(p for p in verify_dir.glob(SUITE_GLOB) if p.is_file()))


def play_roles(play: Play) -> list[str]:
    """The roles a loaded play applies, dependencies first, each once."""
    names: list[str] = []
    for name, _defaults in play.role_defaults:
        if name not in names:
            names.append(name)
    return names


def discover(site_path: Path | str, roles_path: Sequence[Path | str] = ()) -> SiteRoles:
    """Load ``site_path`` and find each applied role's verify suite."""
    site_path = Path(site_path)
    if not site_path.is_file():
        raise LabError(f"site file {site_path} does not exist: give --site FILE")
    site = load_site(site_path, tuple(Path(p) for p in roles_path))
    # the same search path the engine's loader uses for this site
    loader = RoleLoader([site_path.parent / "roles", *(Path(p) for p in roles_path)])
    applied: list[str] = []
    targets: dict[str, list[PlayTarget]] = {}
    for index, play in enumerate(site.plays):
        for name in play_roles(play):
            if name not in targets:
                applied.append(name)
                targets[name] = []
            targets[name].append(PlayTarget(index, play.hosts))
    suites = []
    for name in applied:
        role = loader.find(name, str(site_path))
        tests = suite_files(role.path)
        if tests:
            suites.append(RoleSuite(name, role.path.resolve(), tests, tuple(targets[name])))
    return SiteRoles(site_path, site.plays, applied, suites)


def split_roles(values: Sequence[str] | None) -> tuple[str, ...]:
    """``--roles a,b --roles c`` -> ("a", "b", "c")."""
    return tuple(r.strip() for v in values or () for r in v.split(",") if r.strip())


def plan_runs(
    found: SiteRoles,
    match: Callable[[str], list[str]],
    all_hosts: Sequence[str],
    *,
    limit: str | None = None,
    roles: Sequence[str] = (),
) -> list[SuiteRun]:
    """Which suite runs on which hosts (pure): each role's hosts are the union of its
    plays' ``hosts:`` patterns, narrowed by ``limit``, in inventory order."""
    suites = found.suites
    if roles:
        by_name = {s.role: s for s in suites}
        for name in roles:
            if name not in found.applied:
                raise LabError(
                    f"--roles: the site {found.site} does not apply a role named {name!r} "
                    f"(it applies: {', '.join(found.applied) or 'none'})"
                )
            if name not in by_name:
                raise LabError(
                    f"--roles: role {name!r} has no verify suite "
                    f"({SUITE_DIR}/{SUITE_GLOB} in its directory)"
                )
        suites = [by_name[name] for name in dict.fromkeys(roles)]
    allowed: set[str] | None = None
    if limit:
        allowed = set(match(limit))
        if not allowed:
            raise LabError(f"--limit {limit!r} matches no host of the inventory")
    order = {name: i for i, name in enumerate(all_hosts)}
    runs = []
    for suite in suites:
        play_of: dict[str, int] = {}
        for target in suite.plays:
            for host in match(target.pattern):
                if host in order and (allowed is None or host in allowed):
                    play_of.setdefault(host, target.index)
        hosts = tuple(sorted(play_of, key=order.__getitem__))
        if hosts:
            runs.append(SuiteRun(suite, hosts, play_of))
    if limit and suites and not runs:
        raise LabError(
            f"--limit {limit!r} matches no host that a role with a verify suite is applied to"
        )
    return runs
