"""Variable precedence (every level), lazy templating, filters, tests, errors."""

from __future__ import annotations

import pytest

from labctl.engine import templating
from labctl.engine.model import Play, Task
from labctl.engine.selection import is_selected
from labctl.engine.templating import OMIT, Deferred, LazyVars, TemplatingError
from labctl.engine.variables import HostState, HostVars, task_vars

pytestmark = pytest.mark.unit

# facts are tested on their own below (they arrive as ansible_* names)
LEVELS = ["base", "other_role_default", "own_role_default", "inventory", "play",
          "other_role_var", "own_role_var", "task", "set_fact", "role_param", "extra"]


def layered(upto: str) -> str:
    """Value of ``x`` when every level up to ``upto`` defines it."""
    idx = LEVELS.index(upto)
    defined = set(LEVELS[: idx + 1])

    def when(level: str, value: dict) -> dict:
        return value if level in defined else {}

    play = Play(
        name="p", hosts="all", vars=when("play", {"x": "play"}), gather_facts=False, tasks=[],
        handlers=[],
        role_defaults=[("mine", when("own_role_default", {"x": "own_role_default"})),
                       ("other", when("other_role_default", {"x": "other_role_default"}))],
        role_vars=[("mine", when("own_role_var", {"x": "own_role_var"})),
                   ("other", when("other_role_var", {"x": "other_role_var"}))],
    )
    task = Task(name="t", module="debug", args={}, source="s", role="mine",
                vars=when("task", {"x": "task"}), role_params=when("role_param", {"x": "role_param"}))
    state = HostState("h", when("inventory", {"x": "inventory"}))
    state.runtime_vars.update(when("set_fact", {"x": "set_fact"}))
    raw = task_vars(play, task, state, when("extra", {"x": "extra"}), {},
                    when("base", {"x": "base"}))
    return raw.get("x")


@pytest.mark.parametrize("level", LEVELS)
def test_each_level_overrides_the_ones_below(level):
    assert layered(level) == level


def test_facts_sit_between_inventory_and_play_vars():
    play = Play("p", "all", {}, False, [], [], [], [])
    state = HostState("h", {"ansible_hostname": "from-inventory"}, facts={"hostname": "real"})
    raw = task_vars(play, None, state, {}, {})
    assert raw["ansible_hostname"] == "real" and raw["ansible_facts"]["hostname"] == "real"
    play.vars["ansible_hostname"] = "from-play"
    assert task_vars(play, None, state, {}, {})["ansible_hostname"] == "from-play"


def test_own_role_defaults_win_over_other_roles_defaults_regardless_of_order():
    play = Play("p", "all", {}, False, [], [], [("mine", {"x": "mine"}), ("other", {"x": "other"})], [])
    task = Task("t", "debug", {}, "s", role="mine")
    assert task_vars(play, task, HostState("h", {}), {}, {})["x"] == "mine"
    other = Task("t", "debug", {}, "s", role="other")
    assert task_vars(play, other, HostState("h", {}), {}, {})["x"] == "other"


def test_magic_vars_cannot_be_overridden():
    play = Play("p", "all", {}, False, [], [], [], [])
    raw = task_vars(play, None, HostState("h", {"inventory_hostname": "fake"}), {},
                    {"inventory_hostname": "h"})
    assert raw["inventory_hostname"] == "h"


def test_lazy_templating_resolves_chains_at_use():
    v = LazyVars({"root": "/opt/lab", "dir": "{{ root }}/etcd", "files": ["{{ dir }}/a", "{{ dir }}/b"]})
    assert v["files"] == ["/opt/lab/etcd/a", "/opt/lab/etcd/b"]


def test_single_expression_keeps_its_type_mixed_text_is_a_string():
    v = LazyVars({"n": 3, "items": [1, 2], "flag": False})
    assert templating.template("{{ items }}", v) == [1, 2]
    assert templating.template("{{ n + 1 }}", v) == 4
    assert templating.template("{{ flag }}", v) is False
    assert templating.template("n={{ n }}", v) == "n=3"
    assert templating.template("{{ n }}\n", v) == "3\n"
    assert templating.template(" {{ n }}", v) == " 3"
    assert templating.template({"a": ["{{ n }}"]}, v) == {"a": [3]}


def test_undefined_variable_is_an_error_naming_it():
    with pytest.raises(TemplatingError, match="'nope' is undefined") as info:
        templating.template("x {{ nope }}", LazyVars({}))
    assert templating.undefined_name(info.value.detail) == "nope"


def test_undefined_in_a_nested_variable_names_the_missing_one():
    v = LazyVars({"a": "{{ b }}"})
    with pytest.raises(TemplatingError, match="'b' is undefined"):
        templating.template("{{ a }}", v)


def test_recursive_definition_is_detected():
    with pytest.raises(TemplatingError, match="recursive loop.*'a'"):
        LazyVars({"a": "{{ b }}", "b": "{{ a }}"})["a"]


def test_default_and_omit():
    v = LazyVars({})
    assert templating.template("{{ x | default('d') }}", v) == "d"
    assert templating.template("{{ x | default(omit) }}", v) == OMIT
    assert templating.strip_omitted({"a": 1, "b": OMIT}) == {"a": 1}


def test_deferred_values_are_computed_once_on_first_use():
    calls = []
    v = LazyVars({"w": Deferred(lambda: calls.append(1) or "/wh"), "p": "{{ w }}/x"})
    assert calls == []
    assert v["p"] == "/wh/x" and LazyVars(v.raw)["w"] == "/wh"
    assert calls == [1]


@pytest.mark.parametrize("expr, expected", [
    ("'yes' | bool", True),
    ("'0' | bool", False),
    ("'42' | int + 1", 43),
    ("['a', 'b'] | join(',')", "a,b"),
    ("{'a': 1} | to_json", '{"a": 1}'),
    ("{'a': [1]} | to_nice_yaml", "a:\n- 1\n"),
    ("'hi' | b64encode", "aGk="),
    ("'aGk=' | b64decode", "hi"),
    ("'a-b-c' | regex_replace('-', '_')", "a_b_c"),
    ("'v1.2' | regex_search('[0-9.]+')", "1.2"),
    ("{'a': 1} | dict2items", [{"key": "a", "value": 1}]),
    ("[{'key': 'a', 'value': 1}] | items2dict", {"a": 1}),
    ("{'a': {'x': 1}} | combine({'a': {'y': 2}}, recursive=true)", {"a": {"x": 1, "y": 2}}),
    ("[{'n': 1, 'on': true}, {'n': 2, 'on': false}] | selectattr('on') | map(attribute='n') | list", [1]),
    ("'/a/b.txt' | basename", "b.txt"),
    ("true | ternary('y', 'n')", "y"),
    ("[1, [2, [3]]] | flatten", [1, 2, 3]),
])
def test_filters(expr, expected):
    assert templating.evaluate(expr, LazyVars({})) == expected


def test_result_tests_and_conditions():
    v = LazyVars({"r": {"changed": True, "failed": False}, "loop_r": {"results": [{"changed": False}, {"changed": True}]}})
    assert templating.condition("r is changed", v)
    assert templating.condition(["r is succeeded", "not (r is failed)"], v)
    assert templating.condition("loop_r is changed", v)
    assert not templating.condition("{{ r.failed }}", v)
    assert templating.condition("'abc' is match('a')", v)
    assert not templating.condition("'no'", v)


def test_hostvars_shows_other_hosts_facts_and_set_facts():
    states = {"a": HostState("a", {"role_of": "x"}, facts={"hostname": "a1"}),
              "b": HostState("b", {}, runtime_vars={"token": "t"})}
    hv = HostVars(states, {})
    v = LazyVars({"hostvars": hv})
    assert templating.template("{{ hostvars['a'].ansible_hostname }}", v) == "a1"
    assert templating.template("{{ hostvars.b.token }}", v) == "t"
    assert templating.template("{{ hostvars['a']['role_of'] }}", v) == "x"


def test_template_file_syntax_error_names_file_and_line():
    with pytest.raises(TemplatingError, match=r"syntax error in t.j2 line 2"):
        templating.render_text("ok\n{% if %}\n", LazyVars({}), "t.j2")


@pytest.mark.parametrize("tags, only, skip, selected", [
    ({"a"}, (), (), True),
    (set(), ("a",), (), False),
    ({"a"}, ("a",), (), True),
    ({"always"}, ("a",), (), True),
    ({"always"}, ("a",), ("always",), False),
    ({"never"}, (), (), False),
    ({"never", "debug"}, ("debug",), (), True),
    ({"a"}, (), ("a",), False),
    ({"a", "b"}, ("b",), ("a",), False),
    ({"a"}, ("tagged",), (), True),
    (set(), ("untagged",), (), True),
    ({"a"}, ("untagged",), (), False),
    ({"a"}, ("all",), (), True),
])
def test_tag_selection(tags, only, skip, selected):
    assert is_selected(tags, only, skip) is selected
