"""Whole runs on "hosts" that are local runner processes: conditionals, loops,
register, handlers, tags, --limit, check/diff, failures, output and JSON."""

from __future__ import annotations

import io
import json
import textwrap
from pathlib import Path

import pytest

from labctl.engine import DeployOptions, deploy
from labctl.engine.static_inventory import StaticInventory
from labctl.engine.transport import LocalProcess

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).parent.parent / "fixtures"


def local(host: str) -> LocalProcess:
    return LocalProcess.runner()


def unreachable(host: str):
    raise ConnectionRefusedError(f"{host}: connection refused")


def run_site(tmp_path: Path, files: dict[str, str], hosts=("h1",), groups=None,
             extra_vars=None, host_vars=None, factory=local, **options):
    for rel, text in files.items():
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))
    host_vars = host_vars or {}
    inv = StaticInventory({h: {"root": str(tmp_path / h), **host_vars.get(h, {})} for h in hosts},
                          groups=groups, extra_vars=extra_vars)
    out = io.StringIO()
    result = deploy(inv, None, tmp_path / "site.yml", DeployOptions(out=out, **options),
                    process_factory=factory)
    return result, out.getvalue()


ONE_ROLE = {
    "site.yml": "- hosts: all\n  gather_facts: false\n  roles: [r]\n",
}


def role(tasks: str, handlers: str = "", defaults: str = "") -> dict[str, str]:
    files = dict(ONE_ROLE)
    files["roles/r/tasks/main.yml"] = tasks
    if handlers:
        files["roles/r/handlers/main.yml"] = handlers
    if defaults:
        files["roles/r/defaults/main.yml"] = defaults
    return files


def test_fixture_role_twice_second_run_changes_nothing(tmp_path):
    inv = StaticInventory({"a": {"base_root": str(tmp_path / "a")}, "b": {"base_root": str(tmp_path / "b")}})
    first = deploy(inv, None, FIXTURES / "site-webapp.yml", DeployOptions(out=io.StringIO()),
                   process_factory=local)
    assert first.ok and first.stats["a"]["changed"] > 5
    out = io.StringIO()
    second = deploy(inv, None, FIXTURES / "site-webapp.yml", DeployOptions(out=out),
                    process_factory=local)
    assert second.ok and second.changed == 0, out.getvalue()
    conf = (tmp_path / "a/webapp/etc/webapp.conf").read_text()
    assert "host = a\nport = 8080\nusers = alice,bob\nworkers = 2\ndebug = False\n" in conf
    assert len((tmp_path / "a/webapp/run/restarts").read_text().splitlines()) == 1


def test_when_loop_and_register(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - name: make dirs
          file: {path: "{{ root }}/{{ item.name }}", state: directory}
          loop: "{{ dirs }}"
          loop_control: {label: "{{ item.name }}"}
          when: item.make
          register: made
        - name: record
          copy:
            content: "{{ made.results | selectattr('changed') | map(attribute='item.name') | join(',') }}"
            dest: "{{ root }}/record"
        - name: skipped one
          file: {path: "{{ root }}/never", state: directory}
          when: made is not changed
        """, defaults="dirs: [{name: a, make: true}, {name: b, make: false}, {name: c, make: true}]\n"))
    assert result.ok, out
    assert (tmp_path / "h1/a").is_dir() and not (tmp_path / "h1/b").exists()
    assert (tmp_path / "h1/record").read_text() == "a,c"
    assert not (tmp_path / "h1/never").exists()
    assert "changed: [h1] => (item=a)" in out and "skipping: [h1] => (item=b)" in out
    assert "TASK [r : skipped one]" in out and "skipping: [h1]\n" in out


def test_set_fact_and_register_are_visible_to_later_tasks(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - file: {path: "{{ root }}", state: directory}
        - set_fact: {greeting: "hello {{ inventory_hostname }}"}
        - command: echo {{ greeting }}
          register: said
          changed_when: false
        - assert:
            that: ["said.stdout == 'hello h1'", "said.rc == 0"]
        """))
    assert result.ok, out
    assert result.changed == 1


def test_handlers_run_once_at_end_in_definition_order_only_when_notified(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - file: {path: "{{ root }}", state: directory}
          notify: [second, first]
        - copy: {content: "x", dest: "{{ root }}/x"}
          notify: second
        - name: unchanged task
          command: "true"
          changed_when: false
          notify: never notified
        """, handlers="""\
        - name: first
          shell: echo first >> {{ root }}/log
        - name: second
          shell: echo second >> {{ root }}/log
        - name: never notified
          shell: echo bad >> {{ root }}/log
        - name: listener
          shell: echo listener >> {{ root }}/log
          listen: second
        """))
    assert result.ok, out
    assert (tmp_path / "h1/log").read_text() == "first\nsecond\nlistener\n"
    assert out.index("RUNNING HANDLER [r : first]") > out.index("TASK [r : unchanged task]")
    result, out = run_site(tmp_path, {})   # second run: nothing changed, no handler
    assert result.ok and "RUNNING HANDLER" not in out
    assert (tmp_path / "h1/log").read_text() == "first\nsecond\nlistener\n"


def test_failed_host_stops_others_go_on_and_failure_names_host_task_msg(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - file: {path: "{{ root }}", state: directory}
        - name: break on h2
          fail: {msg: "h2 is broken"}
          when: inventory_hostname == 'h2'
        - name: after
          file: {path: "{{ root }}/after", state: directory}
        """), hosts=("h1", "h2"))
    assert not result.ok and result.exit_code == 1
    assert (tmp_path / "h1/after").is_dir() and not (tmp_path / "h2/after").exists()
    assert [(f.host, f.task, f.msg) for f in result.failures] == [("h2", "r : break on h2", "h2 is broken")]
    assert 'fatal: [h2]: FAILED! => {"changed": false, "msg": "h2 is broken"}' in out
    assert "FAILED: [h2] task 'r : break on h2': h2 is broken" in out
    assert result.stats["h2"]["failed"] == 1 and result.stats["h1"]["failed"] == 0


def test_failed_host_is_left_out_of_later_plays(tmp_path):
    files = {
        "site.yml": """\
            - hosts: all
              gather_facts: false
              tasks:
                - fail: {msg: boom}
                  when: inventory_hostname == 'h2'
            - hosts: all
              gather_facts: false
              tasks:
                - name: second play
                  file: {path: "{{ root }}", state: directory}
            """,
    }
    result, out = run_site(tmp_path, files, hosts=("h1", "h2"))
    assert (tmp_path / "h1").is_dir() and not (tmp_path / "h2").exists()
    assert "ok: [h2]" not in out.split("PLAY [all]")[2]


def test_ignore_errors_failed_when_changed_when(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - name: tolerated
          command: "false"
          ignore_errors: true
        - name: grep style
          command: "sh -c 'exit 1'"
          register: g
          failed_when: g.rc > 1
          changed_when: g.rc == 0
        - name: strict
          shell: "echo oops; exit 2"
          register: s
          failed_when: "'oops' in s.stdout"
        """))
    assert not result.ok
    assert "...ignoring" in out
    assert result.stats["h1"]["ignored"] == 1
    assert result.failures[0].task == "r : strict"
    assert "failed_when held" in result.failures[0].msg
    assert "TASK [r : grep style]" in out and "ok: [h1]" in out


def test_until_retries(tmp_path):
    counter = tmp_path / "h1" / "n"
    result, out = run_site(tmp_path, role(f"""\
        - file: {{path: "{{{{ root }}}}", state: directory}}
        - name: third time lucky
          shell: "echo x >> {counter}; wc -l < {counter}"
          register: r
          until: r.stdout | int >= 3
          retries: 5
          delay: 0
        - name: never
          command: "false"
          register: n
          until: n.rc == 0
          retries: 1
          delay: 0
        """))
    assert counter.read_text().count("x") == 3
    assert result.failures[0].task == "r : never" and "Retried 2 times" in result.failures[0].msg


def test_undefined_variable_names_role_task_and_variable(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - name: uses a missing var
          file: {path: "{{ root }}/{{ not_defined_anywhere }}", state: directory}
        """))
    (failure,) = result.failures
    assert "role 'r'" in failure.msg and "task 'uses a missing var'" in failure.msg
    assert "'not_defined_anywhere' is undefined" in failure.msg
    assert "tasks/main.yml, task 1" in failure.msg


def test_undefined_variable_in_a_template_names_the_template(tmp_path):
    files = role("- template: {src: t.j2, dest: '{{ root }}'}\n")
    files["roles/r/templates/t.j2"] = "line {{ missing_in_template }}\n"
    result, _ = run_site(tmp_path, files)
    assert "missing_in_template" in result.failures[0].msg and "t.j2" in result.failures[0].msg


def test_tags_and_skip_tags(tmp_path):
    files = role("""\
        - file: {path: "{{ root }}", state: directory}
          tags: [always]
        - file: {path: "{{ root }}/a", state: directory}
          tags: [a]
        - file: {path: "{{ root }}/b", state: directory}
          tags: [b]
        - file: {path: "{{ root }}/dbg", state: directory}
          tags: [never, debug]
        """)
    result, _ = run_site(tmp_path, files, tags=("a",))
    assert (tmp_path / "h1/a").exists() and not (tmp_path / "h1/b").exists()
    result, _ = run_site(tmp_path, {}, skip_tags=("a",))
    assert (tmp_path / "h1/b").exists() and not (tmp_path / "h1/dbg").exists()
    result, _ = run_site(tmp_path, {}, tags=("debug",))
    assert (tmp_path / "h1/dbg").exists()


def test_limit_and_play_host_patterns(tmp_path):
    files = {"site.yml": """\
        - hosts: web:!h3
          gather_facts: false
          tasks: [{file: {path: "{{ root }}", state: directory}}]
        """}
    groups = {"web": ["h1", "h2", "h3"]}
    result, out = run_site(tmp_path, files, hosts=("h1", "h2", "h3", "h4"), groups=groups, limit="h2:h4")
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == ["h2"]
    assert set(result.stats) == {"h2"}


def test_check_mode_changes_nothing_and_diff_shows_before_after(tmp_path):
    files = role("""\
        - file: {path: "{{ root }}", state: directory}
        - copy: {content: "v={{ v }}\\n", dest: "{{ root }}/conf"}
        - command: touch {{ root }}/cmd
        """, defaults="v: 1\n")
    result, _ = run_site(tmp_path, files)
    assert (tmp_path / "h1/conf").read_text() == "v=1\n"
    (tmp_path / "h1/cmd").unlink()
    result, out = run_site(tmp_path, {}, extra_vars={"v": 2}, check=True, diff=True)
    assert result.ok
    assert (tmp_path / "h1/conf").read_text() == "v=1\n" and not (tmp_path / "h1/cmd").exists()
    assert "-v=1\n+v=2" in out and "changed: [h1]" in out
    assert "skipping: [h1]" in out    # command in check mode


def test_task_check_mode_false_runs_even_in_check_mode(tmp_path):
    files = role("""\
        - file: {path: "{{ root }}", state: directory}
          check_mode: false
        """)
    result, _ = run_site(tmp_path, files, check=True)
    assert (tmp_path / "h1").is_dir()


def test_unreachable_host(tmp_path):
    result, out = run_site(tmp_path, role("- file: {path: /x, state: directory}\n"), factory=unreachable)
    assert not result.ok and result.exit_code == 2
    assert result.stats["h1"]["unreachable"] == 1
    assert "UNREACHABLE!" in out and "connection refused" in result.failures[0].msg


def test_gathered_facts_and_magic_vars(tmp_path):
    files = {"site.yml": """\
        - hosts: all
          tasks:
            - copy:
                content: "{{ ansible_hostname }} {{ ansible_os_family }} {{ group_names | join(',') }} {{ groups['web'] | join(',') }} {{ hostvars['h2'].root }}"
                dest: "{{ root }}.facts"
        """}
    result, out = run_site(tmp_path, files, hosts=("h1", "h2"), groups={"web": ["h1", "h2"]})
    assert result.ok, out
    text = (tmp_path / "h1.facts").read_text()
    assert text.endswith(f"Debian web h1,h2 {tmp_path / 'h2'}")
    assert "TASK [Gathering Facts]" in out


def test_json_output_is_one_document(tmp_path):
    result, out = run_site(tmp_path, role("- file: {path: '{{ root }}', state: directory}\n"),
                           hosts=("h1", "h2"), as_json=True)
    doc = json.loads(out)
    assert doc["ok"] is True and doc["stats"]["h1"]["changed"] == 1
    (task,) = doc["plays"][0]["tasks"]
    assert task["name"] == "r : file" and task["hosts"]["h2"]["status"] == "changed"


def test_output_is_grouped_per_task_in_host_order(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - name: one
          file: {path: "{{ root }}", state: directory}
        - name: two
          command: "true"
          changed_when: false
        """), hosts=("h1", "h2", "h3"), forks=3)
    one = out.index("TASK [r : one]")
    two = out.index("TASK [r : two]")
    block = out[one:two]
    assert block.index("[h1]") < block.index("[h2]") < block.index("[h3]")
    assert out[two:].count("ok: [") == 3
    recap = out[out.index("PLAY RECAP"):]
    assert "h1 : ok=2  changed=1  unreachable=0  failed=0  skipped=0" in recap


def test_copy_directory_sends_only_changed_files(tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    files = role(f"""\
        - file: {{path: "{{{{ root }}}}", state: directory}}
        - copy: {{src: "{src}/", dest: "{{{{ root }}}}/dst/"}}
          register: synced
        - copy: {{content: "{{{{ synced.changed_files | join(',') }}}}", dest: "{{{{ root }}}}/log"}}
        """)
    result, out = run_site(tmp_path, files)
    assert (tmp_path / "h1/dst/sub/b.txt").read_text() == "b"
    assert (tmp_path / "h1/log").read_text() == "a.txt,sub/b.txt"
    (src / "a.txt").write_text("A")
    result, out = run_site(tmp_path, {})
    assert (tmp_path / "h1/log").read_text() == "a.txt"
    result, out = run_site(tmp_path, {})
    assert (tmp_path / "h1/log").read_text() == ""   # nothing left to send


def test_no_log_hides_the_result_but_register_keeps_it(tmp_path):
    result, out = run_site(tmp_path, role("""\
        - file: {path: "{{ root }}", state: directory}
        - name: secret
          shell: "echo s3cret-value; exit 1"
          register: sec
          failed_when: false
          no_log: true
        - copy: {content: "{{ sec.stdout }}", dest: "{{ root }}/kept"}
        - name: secret failure
          shell: "echo s3cret-value; exit 1"
          no_log: true
        """))
    assert "s3cret-value" not in out
    assert (tmp_path / "h1/kept").read_text() == "s3cret-value"
    assert "s3cret" not in result.failures[0].msg and "no_log" in result.failures[0].msg
