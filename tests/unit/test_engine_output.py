"""The reporter: per-task grouping whatever order hosts report in, recap, diffs."""

from __future__ import annotations

import io

import pytest

from labctl.engine.outcome import Outcome
from labctl.engine.output import Reporter, diff_text

pytestmark = pytest.mark.unit

STEPS = [("TASK", "Gathering Facts"), ("TASK", "r : one"), ("TASK", "r : two"), ("RUNNING HANDLER", "r : h")]


def test_steps_print_in_order_once_every_live_host_reported():
    out = io.StringIO()
    rep = Reporter(out)
    rep.begin_play("p", ["a", "b"], STEPS)
    rep.report("b", 0, Outcome("ok"))
    rep.report("b", 1, Outcome("changed", {"changed": True}))
    rep.report("b", 2, Outcome("ok"))
    rep.report("b", 3, None)
    assert "TASK [r : one]" not in out.getvalue()       # a has not reported yet
    rep.report("a", 0, Outcome("ok"))
    rep.report("a", 1, Outcome("failed", {"failed": True, "msg": "boom"}))
    rep.host_done("a")
    rep.host_done("b")
    rep.end_play()
    text = out.getvalue()
    one = text.index("TASK [r : one]")
    assert text.index("fatal: [a]: FAILED!", one) < text.index("changed: [b]", one)
    assert text.index("TASK [r : two]") > one and "RUNNING HANDLER" not in text
    rep.recap()
    text = out.getvalue()
    assert "a : ok=1  changed=0  unreachable=0  failed=1" in text
    assert "b : ok=3  changed=1  unreachable=0  failed=0" in text
    assert "FAILED: [a] task 'r : one': boom" in text
    assert [(f.host, f.task, f.msg) for f in rep.failures] == [("a", "r : one", "boom")]


def test_unreachable_before_any_step_does_not_block_the_others():
    out = io.StringIO()
    rep = Reporter(out)
    rep.begin_play("p", ["a", "b"], STEPS)
    rep.report("a", 0, Outcome("unreachable", {"unreachable": True, "msg": "no route"}))
    rep.host_done("a")
    for step in range(4):
        rep.report("b", step, Outcome("ok") if step < 3 else None)
    assert "TASK [r : two]" in out.getvalue()


def test_diff_text_for_files_and_states():
    text = diff_text({"before": "a\nb\n", "after": "a\nc\n", "before_header": "/f", "after_header": "t.j2"})
    assert "--- before: /f\n+++ after: t.j2\n" in text and "-b\n+c\n" in text
    state = diff_text({"before": {"state": "absent"}, "after": {"state": "directory"}})
    assert '-    "state": "absent"' in state and '+    "state": "directory"' in state
