"""Which roles a site applies where, which have verify suites, and what runs on which host."""

from __future__ import annotations

from pathlib import Path

import pytest

from labctl.errors import LabError
from labctl.verify.discovery import discover, plan_runs, split_roles

pytestmark = pytest.mark.unit

FIXTURE_SITE = Path(__file__).resolve().parents[1] / "fixtures" / "verify_roles" / "site.yml"
HOSTS = ["a", "b", "c"]
GROUPS = {"all": HOSTS, "web": ["b", "c"], "db": ["a"]}


def match(pattern: str) -> list[str]:
    """A tiny stand-in for the inventory's matcher: names, groups, ':' unions."""
    out: list[str] = []
    for term in pattern.split(":"):
        for host in GROUPS.get(term, [term] if term in HOSTS else []):
            if host not in out:
                out.append(host)
    return out


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def role(root: Path, name: str, *, suite: bool = True, deps: list[str] | None = None) -> None:
    write(root / "roles" / name / "tasks" / "main.yml", "- debug: msg=hi\n")
    if suite:
        write(root / "roles" / name / "verify" / f"test_{name}.py", "def test_x():\n    pass\n")
    if deps:
        write(root / "roles" / name / "meta" / "main.yml",
              "dependencies:\n" + "".join(f"  - {d}\n" for d in deps))


def test_fixture_site_roles_with_dependencies_and_suites():
    found = discover(FIXTURE_SITE)
    assert found.applied == ["toy", "webbase", "webtier"]  # webbase: webtier's dependency
    assert [s.role for s in found.suites] == ["toy", "webbase"]  # webtier has no verify/
    toy, webbase = found.suites
    assert [t.name for t in toy.tests] == ["test_toy.py"]
    assert toy.verify_dir == FIXTURE_SITE.parent / "roles" / "toy" / "verify"
    assert [(p.index, p.pattern) for p in toy.plays] == [(0, "all")]
    assert [(p.index, p.pattern) for p in webbase.plays] == [(1, "web")]


def test_plan_gives_each_suite_the_hosts_of_its_plays():
    runs = plan_runs(discover(FIXTURE_SITE), match, HOSTS)
    assert [(r.role, r.hosts) for r in runs] == [("toy", ("a", "b", "c")), ("webbase", ("b", "c"))]
    assert runs[1].play_of == {"b": 1, "c": 1}


def test_a_role_in_several_plays_runs_on_the_union_in_inventory_order(tmp_path):
    role(tmp_path, "svc")
    write(tmp_path / "site.yml", "- hosts: c\n  roles: [svc]\n- hosts: db\n  roles: [svc]\n")
    [run] = plan_runs(discover(tmp_path / "site.yml"), match, HOSTS)
    assert run.hosts == ("a", "c")
    assert run.play_of == {"c": 0, "a": 1}  # each host's vars come from the play that applied it


def test_dependencies_come_first_and_roles_are_listed_once(tmp_path):
    role(tmp_path, "base")
    role(tmp_path, "mid", suite=False, deps=["base"])
    role(tmp_path, "top", deps=["mid", "base"])
    write(tmp_path / "site.yml", "- hosts: all\n  roles: [top]\n- hosts: web\n  roles: [base]\n")
    found = discover(tmp_path / "site.yml")
    assert found.applied == ["base", "mid", "top"]
    assert [s.role for s in found.suites] == ["base", "top"]
    assert [p.pattern for p in found.suites[0].plays] == ["all", "web"]


def test_only_test_files_make_a_suite(tmp_path):
    role(tmp_path, "quiet", suite=False)
    write(tmp_path / "roles" / "quiet" / "verify" / "helpers.py", "X = 1\n")
    write(tmp_path / "roles" / "quiet" / "verify" / "conftest.py", "")
    write(tmp_path / "site.yml", "- hosts: all\n  roles: [quiet]\n")
    found = discover(tmp_path / "site.yml")
    assert found.applied == ["quiet"] and found.suites == []
    assert plan_runs(found, match, HOSTS) == []


def test_roles_path_is_searched_after_the_sites_roles(tmp_path):
    extra = tmp_path / "more"
    role(extra, "far")
    write(tmp_path / "site.yml", "- hosts: db\n  roles: [far]\n")
    found = discover(tmp_path / "site.yml", [extra / "roles"])
    assert [s.path for s in found.suites] == [(extra / "roles" / "far").resolve()]


def test_limit_narrows_and_drops_suites_left_without_hosts():
    found = discover(FIXTURE_SITE)
    runs = plan_runs(found, match, HOSTS, limit="a")
    assert [(r.role, r.hosts) for r in runs] == [("toy", ("a",))]
    runs = plan_runs(found, match, HOSTS, limit="web")
    assert [(r.role, r.hosts) for r in runs] == [("toy", ("b", "c")), ("webbase", ("b", "c"))]


def test_limit_matching_nothing_is_an_error():
    with pytest.raises(LabError, match="--limit 'nope' matches no host of the inventory"):
        plan_runs(discover(FIXTURE_SITE), match, HOSTS, limit="nope")


def test_roles_selects_suites_in_the_order_given():
    found = discover(FIXTURE_SITE)
    runs = plan_runs(found, match, HOSTS, roles=("webbase", "toy"))
    assert [r.role for r in runs] == ["webbase", "toy"]
    with pytest.raises(LabError, match=r"does not apply a role named 'nginx' \(it applies: toy, "):
        plan_runs(found, match, HOSTS, roles=("nginx",))
    with pytest.raises(LabError, match="role 'webtier' has no verify suite"):
        plan_runs(found, match, HOSTS, roles=("webtier",))


def test_limit_outside_the_selected_roles_hosts_is_an_error():
    with pytest.raises(LabError, match="matches no host that a role with a verify suite"):
        plan_runs(discover(FIXTURE_SITE), match, HOSTS, limit="a", roles=("webbase",))


def test_split_roles():
    assert split_roles(["a,b", " c ", "a,,"]) == ("a", "b", "c", "a")
    assert split_roles(None) == ()


def test_missing_site_and_missing_role_say_what_is_wrong(tmp_path):
    with pytest.raises(LabError, match="site file .*nope.yml does not exist"):
        discover(tmp_path / "nope.yml")
    write(tmp_path / "site.yml", "- hosts: all\n  roles: [ghost]\n")
    with pytest.raises(LabError, match="role 'ghost' not found"):
        discover(tmp_path / "site.yml")
