"""Loading sites and roles: plays, meta dependencies, task parsing, imports, errors."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from labctl.engine.loader import load_site, parse_free_form, parse_task
from labctl.errors import LabError

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent.parent / "fixtures"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return root


def test_fixture_site_loads_with_dependency_first():
    site = load_site(FIXTURES / "site-webapp.yml")
    (play,) = site.plays
    assert play.hosts == "all"
    assert play.tasks[0].role == "base"           # meta dependency before the role
    assert play.tasks[1].display_name == "webapp : create directories"
    assert [name for name, _ in play.role_defaults] == ["base", "webapp"]
    assert [h.name for h in play.handlers] == ["restart webapp"]
    assert play.tasks[2].notify == ["restart webapp"]


def test_dependency_shared_by_two_roles_runs_once(tmp_path):
    write_tree(tmp_path, {
        "site.yml": "- hosts: all\n  roles: [a, b]\n",
        "roles/a/meta/main.yml": "dependencies: [dep]\n",
        "roles/b/meta/main.yml": "dependencies: [{role: dep}]\n",
        "roles/dep/tasks/main.yml": "- name: dep task\n  debug: msg=hi\n",
        "roles/a/tasks/main.yml": "- debug: msg=a\n",
        "roles/b/tasks/main.yml": "- debug: msg=b\n",
    })
    (play,) = load_site(tmp_path / "site.yml").plays
    assert [t.role for t in play.tasks] == ["dep", "a", "b"]


def test_dependency_with_other_params_runs_again(tmp_path):
    write_tree(tmp_path, {
        "site.yml": "- hosts: all\n  roles: [a, b]\n",
        "roles/a/meta/main.yml": "dependencies: [{role: dep, x: 1}]\n",
        "roles/b/meta/main.yml": "dependencies: [{role: dep, x: 2}]\n",
        "roles/dep/tasks/main.yml": "- debug: msg={{ x }}\n",
        "roles/a/tasks/main.yml": "- debug: msg=a\n",
        "roles/b/tasks/main.yml": "- debug: msg=b\n",
    })
    (play,) = load_site(tmp_path / "site.yml").plays
    assert [(t.role, t.role_params) for t in play.tasks] == [
        ("dep", {"x": 1}), ("a", {}), ("dep", {"x": 2}), ("b", {})]


def test_dependency_loop_is_an_error(tmp_path):
    write_tree(tmp_path, {
        "site.yml": "- hosts: all\n  roles: [a]\n",
        "roles/a/meta/main.yml": "dependencies: [b]\n",
        "roles/b/meta/main.yml": "dependencies: [a]\n",
    })
    with pytest.raises(LabError, match="dependency loop: a -> b -> a"):
        load_site(tmp_path / "site.yml")


def test_missing_role_names_where_it_was_looked_for(tmp_path):
    write_tree(tmp_path, {"site.yml": "- hosts: all\n  roles: [nope]\n"})
    with pytest.raises(LabError, match=r"role 'nope' not found \(looked in .*roles"):
        load_site(tmp_path / "site.yml")


def test_roles_path_is_searched_after_site_roles(tmp_path):
    write_tree(tmp_path, {"site/site.yml": "- hosts: all\n  roles: [webapp]\n"})
    (play,) = load_site(tmp_path / "site/site.yml", [FIXTURES / "roles"]).plays
    assert play.tasks[-1].name == "tagged task"


def test_role_entry_tags_and_when_are_inherited(tmp_path):
    write_tree(tmp_path, {
        "site.yml": """\
            - hosts: all
              tags: [play]
              roles:
                - role: r
                  tags: [outer]
                  when: go | bool
                  port: 80
            """,
        "roles/r/tasks/main.yml": "- debug: msg=x\n  tags: inner\n",
    })
    (task,) = load_site(tmp_path / "site.yml").plays[0].tasks
    assert task.tags == {"play", "outer", "inner"}
    assert task.when == ["go | bool"]
    assert task.role_params == {"port": 80}


def test_import_tasks_expands_with_its_when_tags_and_vars(tmp_path):
    write_tree(tmp_path, {
        "site.yml": "- hosts: all\n  roles: [r]\n",
        "roles/r/tasks/main.yml": """\
            - name: first
              debug: msg=1
            - import_tasks: extra.yml
              when: flag
              tags: [extra]
              vars: {v: 2}
            """,
        "roles/r/tasks/extra.yml": "- name: second\n  debug: msg={{ v }}\n  when: other\n",
    })
    tasks = load_site(tmp_path / "site.yml").plays[0].tasks
    assert [t.name for t in tasks] == ["first", "second"]
    assert tasks[1].when == ["flag", "other"]
    assert tasks[1].tags == {"extra"}
    assert tasks[1].vars == {"v": 2}
    assert "extra.yml, task 1" in tasks[1].source


def test_fqcn_and_aliases_and_free_form_args():
    task = parse_task({"ansible.builtin.copy": "src=a dest=/b mode=0644"})
    assert (task.module, task.args) == ("copy", {"src": "a", "dest": "/b", "mode": "0644"})
    assert parse_task({"ansible.posix.sysctl": {"name": "x", "value": 1}}).module == "sysctl"
    assert parse_task({"systemd": {"name": "x"}}).module == "systemd_service"


def test_command_free_form_keeps_the_command_and_takes_options_out():
    assert parse_free_form("command", "touch /x creates=/x") == {
        "_raw_params": "touch /x", "creates": "/x"}
    assert parse_free_form("shell", "echo a | wc -l > /o") == {"_raw_params": "echo a | wc -l > /o"}


def test_task_keywords_are_parsed():
    task = parse_task({
        "name": "t", "command": "true", "register": "r", "changed_when": False,
        "failed_when": "r.rc > 1", "ignore_errors": True, "loop": [1, 2],
        "loop_control": {"loop_var": "n", "label": "{{ n }}"}, "until": "r.rc == 0",
        "retries": 2, "delay": 0, "notify": "h", "check_mode": False, "tags": "a,b",
    })
    assert task.register == "r" and task.changed_when is False and task.ignore_errors
    assert task.loop_var == "n" and task.loop_label == "{{ n }}"
    assert task.notify == ["h"] and task.tags == {"a", "b"}
    assert (task.retries, task.delay, task.check_mode) == (2, 0.0, False)


@pytest.mark.parametrize("raw, message", [
    ({"name": "x"}, "exactly one module"),
    ({"copy": {}, "file": {}}, "exactly one module"),
    ({"apt": {"name": "x"}}, "unknown module 'apt'"),
    ({"debug": {}, "delegate_to": "h"}, "'delegate_to' is not supported"),
])
def test_bad_tasks_are_refused_with_their_source(raw, message):
    raw["__source__"] = "roles/r/tasks/main.yml, task 4"
    with pytest.raises(LabError, match=message) as info:
        parse_task(raw)
    assert "roles/r/tasks/main.yml, task 4" in str(info.value)


def test_bad_site_shapes(tmp_path):
    (tmp_path / "a.yml").write_text("hosts: all\n")
    with pytest.raises(LabError, match="list of plays"):
        load_site(tmp_path / "a.yml")
    (tmp_path / "b.yml").write_text("- roles: [x]\n")
    with pytest.raises(LabError, match="play 1: a play needs 'hosts:'"):
        load_site(tmp_path / "b.yml")
    (tmp_path / "c.yml").write_text("- hosts: all\n  bogus: 1\n")
    with pytest.raises(LabError, match="unsupported play keyword"):
        load_site(tmp_path / "c.yml")
    (tmp_path / "d.yml").write_text("- hosts: all\n  tasks: [\n")
    with pytest.raises(LabError, match="invalid YAML"):
        load_site(tmp_path / "d.yml")


def test_play_tasks_handlers_and_order(tmp_path):
    write_tree(tmp_path, {
        "site.yml": """\
            - hosts: web:&prod
              pre_tasks: [{name: pre, debug: {msg: p}}]
              roles: [r]
              tasks: [{name: main, debug: {msg: m}, notify: play handler}]
              post_tasks: [{name: post, debug: {msg: q}}]
              handlers: [{name: play handler, debug: {msg: h}}]
            """,
        "roles/r/tasks/main.yml": "- name: role task\n  debug: msg=r\n",
        "roles/r/handlers/main.yml": "- name: role handler\n  debug: msg=h\n  listen: poke\n",
    })
    (play,) = load_site(tmp_path / "site.yml").plays
    assert play.hosts == "web:&prod"
    assert [t.name for t in play.tasks] == ["pre", "role task", "main", "post"]
    assert [h.name for h in play.handlers] == ["role handler", "play handler"]
    assert play.handlers[0].listen == ["poke"]
