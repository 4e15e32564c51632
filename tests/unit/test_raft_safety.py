"""Raft's safety properties (paper, Figure 3) over randomized simulations.

Each seed runs a cluster through a few hundred random steps: ticks, proposals,
message delivery with drops, delays and reordering, partitions, crashes and
restarts from persisted storage, log compaction (so snapshots get shipped),
leadership transfers, ReadIndex requests and membership changes (add a voter or
a learner, remove a member, the leader included). The harness's SafetyMonitor watches
every Ready. ``RAFT_SIM_SEEDS=2000`` runs more seeds (default 200).
"""

from __future__ import annotations

import contextlib
import os
import random
from dataclasses import dataclass

import pytest

from agents.etcd.raft import ConfChange, ConfChangeType, ProposalDropped
from agents.etcd.raft.testing import Network, SafetyMonitor

pytestmark = pytest.mark.unit

SEEDS = int(os.environ.get("RAFT_SIM_SEEDS", "200"))
STEPS = int(os.environ.get("RAFT_SIM_STEPS", "150"))


@dataclass
class SimResult:
    seed: int
    monitor: SafetyMonitor
    committed: int
    elections: int
    snapshots_sent: int
    restarts: int
    conf_changes: int


def simulate(seed: int, steps: int = STEPS) -> SimResult:
    rng = random.Random(seed)
    ids = [1, 2, 3] if rng.random() < 0.6 else [1, 2, 3, 4, 5]
    net = Network(
        ids,
        seed=seed,
        election_tick=rng.choice([4, 6, 10]),
        heartbeat_tick=1,
        pre_vote=rng.random() < 0.8,
        check_quorum=rng.random() < 0.8,
        max_inflight_msgs=rng.choice([1, 4, 64]),
    )
    p_drop = rng.choice([0.0, 0.05, 0.2])
    p_delay = rng.choice([0.0, 0.2, 0.5])
    snapshots_sent = restarts = conf_changes = 0
    membership = rng.random() < 0.5
    counter = 0
    for _ in range(steps):
        x = rng.random()
        if x < 0.30:
            net.tick(1, stabilize=False)
        elif x < 0.55:
            up = net.up()
            if up:
                counter += 1
                with contextlib.suppress(ProposalDropped):
                    net.propose(rng.choice(up), b"s%d-%d" % (seed, counter))
        elif x < 0.58:
            nodes = list(net.nodes)
            k = rng.randrange(len(nodes))
            net.partition(nodes[:k] or nodes[:1], nodes[k:])
        elif x < 0.62:
            net.heal()
        elif x < 0.64:
            alive = net.up()
            if len(alive) > 1:
                net.crash(rng.choice(alive))
        elif x < 0.68:
            dead = sorted(net.down)
            if dead:
                net.restart(rng.choice(dead))
                restarts += 1
        elif x < 0.71:
            i = rng.choice(net.up() or list(net.nodes))
            r = net.nodes[i].raft
            if i not in net.down and r.log.applied > net.storages[i].snapshot().metadata.index:
                net.compact(i)
        elif x < 0.72:
            lead = net.leader()
            if lead is not None:
                net.nodes[lead].transfer_leader(rng.choice(list(net.nodes)))
        elif x < 0.74:
            i = rng.choice(net.up() or list(net.nodes))
            if i not in net.down:
                with contextlib.suppress(ProposalDropped):
                    net.nodes[i].read_index(b"r%d" % counter)
        elif x < 0.76 and membership:
            conf_changes += _random_conf_change(net, rng)
        # the application loops and the network always make some progress
        net.process_all()
        if p_delay or p_drop:
            rng.shuffle(net.queue)
        keep = []
        for m in net.queue:
            y = rng.random()
            if y < p_drop:
                net._discard(m)
            elif y < p_drop + p_delay:
                keep.append(m)
            else:
                if m.type.name == "MsgSnap" and net._can_deliver(m):
                    snapshots_sent += 1
                net.deliver_one(m)
        net.queue = keep
    # Liveness sanity: once the faults stop, the cluster commits again. Members
    # removed from the configuration shut down, as an etcd member does.
    net.heal()
    latest = max(net.nodes, key=lambda i: net.nodes[i].raft.log.applied)
    conf = net.conf_states[latest]
    members = set(conf.voters) | set(conf.learners)
    for i in list(net.nodes):
        if i not in members:
            net.crash(i)
        elif i in net.down:
            net.restart(i)
    elections_before = len(net.monitor.leader_of_term)

    def committed_everywhere() -> bool:
        lead = net.leader()
        if lead is None:
            return False
        trk = net.nodes[lead].raft.trk
        for i in net.up():
            if i not in trk.progress:  # removal committed and applied: shut down
                net.crash(i)
        for i in sorted(net.down):
            if i in trk.progress:  # a member added meanwhile
                net.restart(i)
        if not all(net.nodes[i].lead == lead for i in net.up()):
            return False
        try:
            net.propose(lead, b"final-%d" % seed)
        except ProposalDropped:
            return False
        net.stabilize()
        return all(net.values(i) and net.values(i)[-1] == b"final-%d" % seed for i in net.up())

    net.tick_until(committed_everywhere, max_ticks=400)
    net.check_logs()
    return SimResult(
        seed,
        net.monitor,
        committed=max(len(v) for v in net.applied.values()),
        elections=max(elections_before, len(net.monitor.leader_of_term)),
        snapshots_sent=snapshots_sent,
        restarts=restarts,
        conf_changes=conf_changes,
    )


def _random_conf_change(net: Network, rng: random.Random) -> int:
    """Add a new member or remove one (possibly the leader), via the leader."""
    lead = net.leader()
    if lead is None:
        return 0
    voters = net.nodes[lead].raft.trk.voters
    if len(voters) < 5 and (len(voters) <= 3 or rng.random() < 0.5):
        new_id = max(net.nodes) + 1
        kind = rng.choice(
            [ConfChangeType.ConfChangeAddNode, ConfChangeType.ConfChangeAddLearnerNode]
        )
        cc = ConfChange(kind, new_id)
        add = True
    else:
        cc = ConfChange(ConfChangeType.ConfChangeRemoveNode, rng.choice(sorted(voters)))
        add = False
    try:
        net.nodes[lead].propose_conf_change(cc)
    except ProposalDropped:
        return 0
    if add:
        net.add_node(cc.node_id)
    return 1


@pytest.fixture(scope="module")
def runs() -> list[SimResult]:
    return [simulate(seed) for seed in range(SEEDS)]


def _violations(runs, prop):
    return [(r.seed, r.monitor.violations[prop][:2]) for r in runs if r.monitor.violations[prop]]


def test_simulations_exercise_the_interesting_paths(runs):
    assert sum(r.committed for r in runs) > 10 * len(runs)
    assert sum(r.elections for r in runs) > len(runs)  # re-elections happen
    assert sum(r.snapshots_sent for r in runs) > 0
    assert sum(r.restarts for r in runs) > 0
    assert sum(r.conf_changes for r in runs) > 0


def test_election_safety(runs):
    """At most one leader can be elected in a given term."""
    assert _violations(runs, "election_safety") == []


def test_leader_append_only(runs):
    """A leader never overwrites or deletes entries in its log; it only appends."""
    assert _violations(runs, "leader_append_only") == []


def test_log_matching(runs):
    """If two logs contain an entry with the same index and term, the logs are
    identical in all entries up through that index."""
    assert _violations(runs, "log_matching") == []


def test_leader_completeness(runs):
    """A committed entry is present in the logs of the leaders of all higher terms."""
    assert _violations(runs, "leader_completeness") == []


def test_state_machine_safety(runs):
    """No two servers apply different entries at the same log index."""
    assert _violations(runs, "state_machine_safety") == []


def test_the_monitor_catches_a_violation():
    """The checks above are not vacuous: a forged anomaly is reported."""
    from agents.etcd.raft import Entry

    mon = SafetyMonitor()
    mon.observe_apply(1, Entry(2, 5, data=b"a"))
    mon.observe_apply(2, Entry(3, 5, data=b"b"))
    mon.observe_leader(1, 7, {})
    mon.observe_leader(2, 7, {})
    mon.check_log_matching(
        {
            1: {1: Entry(1, 1, data=b"x"), 2: Entry(2, 2)},
            2: {1: Entry(1, 1, data=b"y"), 2: Entry(2, 2)},
        }
    )
    assert mon.violations["state_machine_safety"]
    assert mon.violations["election_safety"]
    assert mon.violations["log_matching"]
    with pytest.raises(AssertionError, match="safety violated"):
        mon.assert_safe()
