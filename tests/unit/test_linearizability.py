"""The WGL linearizability checker on known-good and known-bad histories."""

from __future__ import annotations

import random
import time

import pytest

from labctl.chaos import Event, check
from labctl.chaos.linearizability import HistoryError, to_ops

pytestmark = pytest.mark.unit


def h(*rows):
    """rows: (process, type, f, value[, revision]) on key 'x', times = position."""
    out = []
    for n, r in enumerate(rows):
        p, t, f, v, *rev = r
        out.append(Event(p, t, f, "x", v, float(n), rev[0] if rev else None))
    return out


def test_sequential_write_then_read_is_linearizable():
    r = check(
        h(
            (1, "invoke", "write", 1),
            (1, "ok", "write", 1),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),
        )
    )
    assert r.linearizable is True
    assert r.ops_checked == 2


def test_stale_read_is_caught_with_the_ops_involved():
    r = check(
        h(
            (1, "invoke", "write", 1),
            (1, "ok", "write", 1),
            (1, "invoke", "write", 2),
            (1, "ok", "write", 2),
            (2, "invoke", "read", None),
            (2, "ok", "read", 1),  # reads the older value after write 2 completed
        )
    )
    assert r.linearizable is False
    assert r.key == "x"
    assert r.failing_op.f == "read" and r.failing_op.value == 1
    assert [(o.f, o.value) for o in r.ops] == [("write", 2), ("read", 1)]
    assert len(r.prefix) == 6
    assert "NOT linearizable" in r.explain()


def test_concurrent_read_may_see_either_value():
    for seen in (1, 2):
        r = check(
            h(
                (1, "invoke", "write", 1),
                (1, "ok", "write", 1),
                (1, "invoke", "write", 2),
                (2, "invoke", "read", None),
                (2, "ok", "read", seen),
                (1, "ok", "write", 2),
            )
        )
        assert r.linearizable is True, seen


def test_lost_write_is_caught():
    # write 2 was acknowledged, yet later reads see 1 again, never 2
    r = check(
        h(
            (1, "invoke", "write", 1),
            (1, "ok", "write", 1),
            (2, "invoke", "write", 2),
            (2, "ok", "write", 2),
            (3, "invoke", "read", None),
            (3, "ok", "read", 1),
        )
    )
    assert r.linearizable is False


def test_failed_write_has_no_effect():
    bad = h(
        (1, "invoke", "write", 1),
        (1, "fail", "write", 1),
        (2, "invoke", "read", None),
        (2, "ok", "read", 1),
    )
    assert check(bad).linearizable is False


def test_indeterminate_write_may_appear_later():
    # the write timed out (info) and becomes visible long after: linearizable
    r = check(
        h(
            (1, "invoke", "write", 7),
            (1, "info", "write", 7),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", 7),
        )
    )
    assert r.linearizable is True


def test_indeterminate_write_cannot_disappear_once_seen():
    r = check(
        h(
            (1, "invoke", "write", 7),
            (1, "info", "write", 7),
            (2, "invoke", "read", None),
            (2, "ok", "read", 7),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
        )
    )
    assert r.linearizable is False


def test_never_completed_invocation_counts_as_indeterminate():
    r = check(h((1, "invoke", "write", 3), (2, "invoke", "read", None), (2, "ok", "read", 3)))
    assert r.linearizable is True


def test_cas_on_value():
    ok = h(
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1),
        (2, "invoke", "cas", (1, 5)),
        (2, "ok", "cas", (1, 5)),
        (3, "invoke", "read", None),
        (3, "ok", "read", 5),
    )
    assert check(ok).linearizable is True
    bad = h(
        (1, "invoke", "write", 1),
        (1, "ok", "write", 1),
        (2, "invoke", "cas", (2, 5)),  # expected 2 but the value is 1: cannot succeed
        (2, "ok", "cas", (2, 5)),
    )
    assert check(bad).linearizable is False


def test_cas_on_mod_revision_like_etcd_txn():
    ok = h(
        (1, "invoke", "cas_revision", (0, "a")),  # create
        (1, "ok", "cas_revision", (0, "a"), 5),
        (2, "invoke", "cas_revision", (5, "b")),
        (2, "ok", "cas_revision", (5, "b"), 9),
        (3, "invoke", "read", None),
        (3, "ok", "read", "b", 9),
    )
    assert check(ok).linearizable is True
    two_creates = h(
        (1, "invoke", "cas_revision", (0, "a")),
        (1, "ok", "cas_revision", (0, "a"), 5),
        (2, "invoke", "cas_revision", (0, "b")),  # create again: key exists, must fail
        (2, "ok", "cas_revision", (0, "b"), 6),
    )
    assert check(two_creates).linearizable is False


def test_read_revision_must_match_and_revisions_grow():
    stale_rev = h(
        (1, "invoke", "write", "a"),
        (1, "ok", "write", "a", 4),
        (2, "invoke", "read", None),
        (2, "ok", "read", "a", 3),
    )
    assert check(stale_rev).linearizable is False
    unknown_then_learned = h(
        (1, "invoke", "write", "a"),
        (1, "info", "write", "a"),
        (2, "invoke", "read", None),
        (2, "ok", "read", "a", 8),
        (2, "invoke", "read", None),
        (2, "ok", "read", "a", 8),
    )
    assert check(unknown_then_learned).linearizable is True


def test_delete_makes_key_absent():
    r = check(
        h(
            (1, "invoke", "write", 1),
            (1, "ok", "write", 1),
            (1, "invoke", "delete", None),
            (1, "ok", "delete", None),
            (2, "invoke", "read", None),
            (2, "ok", "read", None),
        )
    )
    assert r.linearizable is True


def test_keys_are_independent_and_anomaly_names_its_key():
    events = [
        Event(1, "invoke", "write", "a", 1, 0),
        Event(1, "ok", "write", "a", 1, 1),
        Event(2, "invoke", "write", "b", 1, 2),
        Event(2, "ok", "write", None, 1, 3),  # completion without a key: its invoke's key
        Event(3, "invoke", "read", "b", None, 4),
        Event(3, "ok", "read", "b", None, 5),
        Event(4, "invoke", "read", "a", None, 6),
        Event(4, "ok", "read", "a", 1, 7),
    ]
    r = check(events)
    assert r.linearizable is False and r.key == "b"


def test_dict_events_and_default_times():
    r = check(
        [
            {"process": "c1", "type": "invoke", "f": "write", "key": "k", "value": 1},
            {"process": "c1", "type": "ok", "f": "write", "key": "k", "value": 1},
            {"process": "c2", "type": "invoke", "f": "read", "key": "k"},
            {"process": "c2", "type": "ok", "f": "read", "key": "k", "value": 1},
        ]
    )
    assert r and r.linearizable is True


@pytest.mark.parametrize(
    "events, message",
    [
        ([{"process": 1, "type": "ok", "f": "read"}], "no invoke"),
        ([{"process": 1, "type": "start", "f": "read"}], "expected invoke"),
        ([{"process": 1, "type": "invoke", "f": "incr"}], "expected one of"),
        ([{"type": "invoke", "f": "read"}], "lacks field"),
        (
            [
                {"process": 1, "type": "invoke", "f": "read"},
                {"process": 1, "type": "invoke", "f": "read"},
            ],
            "invokes again",
        ),
        (
            [
                {"process": 1, "type": "invoke", "f": "cas", "value": 3},
                {"process": 1, "type": "ok", "f": "cas"},
            ],
            "(expected, new)",
        ),
    ],
)
def test_malformed_histories_are_rejected_clearly(events, message):
    with pytest.raises(HistoryError, match=message):
        to_ops(events)


def linearizable_history(n_ops: int, clients: int, seed: int, keys=("x",)):
    """A random concurrent history of an atomic register: each op takes effect at a
    random instant inside its interval; some outcomes are lost (info)."""
    rng = random.Random(seed)
    t = 0.0
    state = {k: (None, 0) for k in keys}
    rev = 0
    running = {}  # process -> (invoke event, effect time, done time, f, key, value)
    events = []
    next_val = 0
    planned = []
    for _ in range(n_ops):
        p = rng.randrange(clients)
        planned.append(p)
    free_at = dict.fromkeys(range(clients), 0.0)
    actions = []  # (time, kind, payload)
    for p in planned:
        start = free_at[p] + rng.random()
        effect = start + rng.random() * 2
        end = effect + rng.random() * 2
        free_at[p] = end
        f = rng.choice(("read", "read", "write", "cas"))
        key = rng.choice(keys)
        actions.append((start, 0, p, f, key))
        actions.append((effect, 1, p, f, key))
        actions.append((end, 2, p, f, key))
    actions.sort()
    for when, kind, p, f, key in actions:
        t = when
        if kind == 0:
            if f == "write":
                next_val += 1
                val = next_val
            elif f == "cas":
                next_val += 1
                val = (rng.choice([state[key][0], next_val - 1]), next_val)
            else:
                val = None
            running[p] = [f, key, val, None, None, rng.random() < 0.03]
            events.append(Event(p, "invoke", f, key, val, t))
        elif kind == 1:
            f_, key_, val, _, _, lost = running[p]
            v, r = state[key_]
            if f_ == "read":
                running[p][3], running[p][4] = v, r
            elif f_ == "write":
                rev += 1
                state[key_] = (val, rev)
                running[p][4] = rev
            elif f_ == "cas":
                if v == val[0]:
                    rev += 1
                    state[key_] = (val[1], rev)
                    running[p][3], running[p][4] = "ok", rev
                else:
                    running[p][3] = "fail"
        else:
            f_, key_, val, res, r, lost = running.pop(p)
            if lost and f_ != "cas":
                events.append(Event(p, "info", f_, key_, val, t))
                free_at[p] = t
            elif f_ == "read":
                events.append(Event(p, "ok", f_, key_, res, t, r))
            elif f_ == "cas":
                events.append(Event(p, "ok" if res == "ok" else "fail", f_, key_, val, t, r))
            else:
                events.append(Event(p, "ok", f_, key_, val, t, r))
    # an info op's process must not invoke again: re-label later ops of lost processes
    relabel, out, gen = {}, [], 0
    for e in events:
        pid = relabel.get(e.process, e.process)
        out.append(Event(pid, e.type, e.f, e.key, e.value, e.time, e.revision))
        if e.type == "info":
            gen += 1
            relabel[e.process] = (e.process, gen)
    return out


@pytest.mark.parametrize("seed", range(5))
def test_generated_linearizable_histories_pass(seed):
    hist = linearizable_history(300, 5, seed, keys=("x", "y"))
    r = check(hist)
    assert r.linearizable is True, r.explain()


def test_generated_history_with_one_stale_read_fails():
    hist = linearizable_history(300, 5, 42)
    # Corrupt the last successful read that saw a write's value into seeing an older one.
    for n in range(len(hist) - 1, -1, -1):
        e = hist[n]
        if e.type == "ok" and e.f == "read" and isinstance(e.value, int) and e.value > 3:
            hist[n] = Event(e.process, "ok", "read", e.key, -1, e.time, None)
            break
    r = check(hist)
    assert r.linearizable is False
    assert r.failing_op.value == -1


def test_performance_2000_ops_5_clients_under_a_second():
    hist = linearizable_history(2000, 5, 7)
    t0 = time.process_time()
    r = check(hist)
    elapsed = time.process_time() - t0
    assert r.linearizable is True, r.explain()
    assert r.ops_checked > 1500  # failed cas and lost reads are dropped
    assert elapsed < 1.0, f"checking 2000 ops took {elapsed:.2f}s of CPU"
