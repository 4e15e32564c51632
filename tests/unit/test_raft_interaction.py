"""Scripted interaction tests of the Raft core on an in-memory network."""

from __future__ import annotations

import pytest

from agents.etcd.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    MemoryStorage,
    MessageType,
    NotLeader,
    ProposalDropped,
    RawNode,
    StateType,
)
from agents.etcd.raft.testing import Network

pytestmark = pytest.mark.unit
MT = MessageType


@pytest.fixture
def net():
    n = Network([1, 2, 3], seed=1)
    yield n
    n.monitor.assert_safe()
    n.check_logs()
    n.monitor.assert_safe()


def states(net):
    return {i: net.nodes[i].raft.state for i in net.nodes}


def wait_single_leader(net, max_ticks=300):
    net.tick_until(
        lambda: (
            len([i for i in net.up() if net.nodes[i].is_leader]) == 1
            and all(net.nodes[i].lead == net.leader() for i in net.up())
        ),
        max_ticks,
    )
    return net.leader()


def wait_leader_other_than(net, old, max_ticks=300):
    net.tick_until(lambda: any(net.nodes[i].is_leader for i in net.up() if i != old), max_ticks)
    return next(i for i in net.up() if i != old and net.nodes[i].is_leader)


# ---------------------------------------------------------------- elections


def test_a_leader_is_elected_by_timeouts(net):
    assert net.leader() is None
    lead = wait_single_leader(net)
    assert lead in (1, 2, 3)
    terms = {net.nodes[i].raft.term for i in net.nodes}
    assert len(terms) == 1
    # the leader's empty entry of its term is committed everywhere
    assert all(net.nodes[i].raft.log.committed == 4 for i in net.nodes)


def test_explicit_campaign_wins(net):
    net.elect(2)
    assert states(net) == {
        1: StateType.StateFollower,
        2: StateType.StateLeader,
        3: StateType.StateFollower,
    }
    assert net.nodes[1].lead == 2 and net.nodes[3].lead == 2


def test_pre_vote_keeps_a_partitioned_node_from_disrupting_on_rejoin(net):
    net.elect(1)
    term = net.nodes[1].raft.term
    net.isolate(3)
    net.tick(60)
    assert net.nodes[3].raft.term == term  # pre-votes failed: no term inflation
    assert net.nodes[3].raft.state == StateType.StatePreCandidate
    net.heal()
    net.tick(5)
    assert net.leader() == 1 and net.nodes[1].raft.term == term
    assert net.nodes[3].lead == 1


def test_without_pre_vote_a_rejoining_node_disrupts_the_leader():
    net = Network([1, 2, 3], seed=1, pre_vote=False, check_quorum=False)
    net.elect(1)
    term = net.nodes[1].raft.term
    net.isolate(3)
    net.tick(60)
    assert net.nodes[3].raft.term > term + 1
    net.heal()
    net.tick(3)
    assert net.nodes[1].raft.term > term  # the old leader was deposed by the higher term
    net.monitor.assert_safe()


def test_check_quorum_steps_down_an_isolated_leader(net):
    net.elect(1)
    net.isolate(1)
    net.tick(25)  # more than an election timeout
    assert net.nodes[1].raft.state == StateType.StateFollower
    new = net.leader()
    assert new in (2, 3)
    net.heal()
    net.tick(3)
    assert net.leader() == new and net.nodes[1].lead == new


def test_votes_inside_a_leader_lease_are_ignored(net):
    net.elect(1)
    term = net.nodes[1].raft.term
    # 3 campaigns without pre-vote checks (as if its clock ran fast): 2 is in lease
    net.nodes[3].raft.campaign(b"CampaignElection")
    net.stabilize()
    assert net.nodes[2].raft.vote == 1 and net.nodes[2].raft.term == term
    assert wait_single_leader(net) in (1, 2, 3)


# ---------------------------------------------------------------- replication


def test_log_replication_and_commit(net):
    net.elect(1)
    for k in range(10):
        net.propose(1 + k % 3, f"v{k}".encode())  # followers forward to the leader
        net.stabilize()
    want = [f"v{k}".encode() for k in range(10)]
    for i in (1, 2, 3):
        assert net.values(i) == want
    commits = {net.nodes[i].raft.log.committed for i in net.nodes}
    assert len(commits) == 1


def test_many_proposals_make_one_append_per_follower(net):
    net.elect(1)
    leader = net.nodes[1]
    for k in range(100):
        leader.propose(b"x%d" % k)
    rd = leader.ready()
    assert len(rd.entries) == 100
    apps = [m for m in rd.messages if m.type == MT.MsgApp]
    assert sorted(m.to for m in apps) == [2, 3]
    assert all(len(m.entries) == 100 for m in apps)
    net._persist(1, rd)
    for m in rd.messages:
        net._send(m)
    net._apply(1, leader, rd)
    leader.advance(rd)
    net.stabilize()
    assert len(net.values(3)) == 100


def test_pipelining_sends_ahead_without_waiting_for_acks(net):
    net.elect(1)
    leader = net.nodes[1]
    for batch in range(3):
        leader.propose(b"b%d" % batch)
        net.process_ready(1)  # do not deliver: acks cannot arrive
    apps = [m for m in net.queue if m.type == MT.MsgApp and m.to == 2]
    assert [m.entries[0].data for m in apps] == [b"b0", b"b1", b"b2"]
    assert net.nodes[1].status()["progress"][2]["inflight"] == 3
    net.stabilize()
    assert net.values(2) == [b"b0", b"b1", b"b2"]


def test_inflight_window_limits_unacknowledged_appends():
    net = Network([1, 2, 3], seed=1, max_inflight_msgs=2)
    net.elect(1)
    for k in range(5):
        net.propose(1, b"%d" % k)
        net.process_ready(1)
    assert len([m for m in net.queue if m.type == MT.MsgApp and m.to == 2]) == 2
    net.stabilize()
    assert len(net.values(2)) == 5


def test_reordered_and_dropped_messages_still_converge(net):
    net.elect(1)
    for k in range(20):
        net.propose(1, b"%d" % k)
        net.process_all()
        net.reorder()
        if k % 4 == 0:
            net.drop(lambda m: m.type == MT.MsgApp and m.to == 3)
        net.deliver()
    net.tick(5)
    want = [b"%d" % k for k in range(20)]
    assert net.values(1) == net.values(2) == net.values(3) == want


def test_conflicting_follower_log_is_overwritten(net):
    net.elect(1)
    net.propose(1, b"committed")
    net.stabilize()
    net.isolate(1)
    for k in range(3):
        net.propose(1, b"lost%d" % k)  # appended by the old leader only
    net.stabilize()
    old_last = net.nodes[1].raft.log.last_index()
    new = wait_leader_other_than(net, 1)
    net.propose(new, b"new")
    net.stabilize()
    net.heal()
    net.tick(5)
    assert net.leader() == new
    assert net.values(1) == [b"committed", b"new"]
    log1 = net.log_of(1)
    assert all(e.data not in (b"lost0", b"lost1", b"lost2") for e in log1.values())
    assert net.nodes[1].raft.log.last_index() >= old_last - 1


def test_rejection_hint_skips_a_whole_divergent_term(net):
    net.elect(1)
    net.isolate(1)
    for k in range(50):
        net.propose(1, b"junk%d" % k)
    net.stabilize()
    new = wait_leader_other_than(net, 1)
    net.heal()
    net.tick(3)
    probes = []
    orig = net.deliver_one

    def spy(m):
        if m.to == 1 and m.type == MT.MsgApp:
            probes.append(m.index)
        orig(m)

    net.deliver_one = spy
    net.propose(new, b"after")
    net.tick(3)
    # the follower's 50 divergent entries were skipped in a few probes, not 50
    assert len(set(probes)) < 5
    assert net.values(1)[-1] == b"after"


def test_lagging_follower_catches_up_by_snapshot(net):
    net.elect(1)
    net.crash(3)
    for k in range(30):
        net.propose(1, b"%d" % k)
        net.stabilize()
    snap = net.compact(1)
    net.compact(2)
    assert net.storages[1].first_index() > 10
    net.restart(3)
    net.tick(5)
    assert net.storages[3].snapshot().metadata.index == snap.metadata.index
    assert net.values(3) == net.values(1)
    net.propose(1, b"after")
    net.stabilize()
    assert net.values(3)[-1] == b"after"
    assert net.nodes[1].status()["progress"][3]["state"] == "Replicate"


def test_dropped_snapshot_is_retried(net):
    net.elect(1)
    net.crash(3)
    for k in range(10):
        net.propose(1, b"%d" % k)
    net.stabilize()
    net.compact(1)
    net.restart(3)
    net.tick(1, stabilize=False)
    # drop everything to 3 until the leader sends a snapshot, then drop that too
    for _ in range(20):
        net.process_all()
        if net.drop(lambda m: m.type == MT.MsgSnap):
            break
        net.deliver()
    assert net.nodes[1].status()["progress"][3]["state"] == "Probe"  # reported failure
    net.tick(5)
    assert net.values(3) == net.values(1)


# ---------------------------------------------------------------- ReadIndex


def test_read_index_waits_for_a_commit_in_the_leaders_term():
    net = Network([1, 2, 3], seed=1)
    net.nodes[1].campaign()
    # deliver votes only; hold the leader's appends so its empty entry is not committed
    for _ in range(10):
        net.process_all()
        net.deliver(lambda m: m.type not in (MT.MsgApp, MT.MsgAppResp))
    assert net.nodes[1].is_leader
    net.nodes[1].read_index(b"r1")
    net.process_all()
    net.deliver(lambda m: m.type not in (MT.MsgApp, MT.MsgAppResp))
    net.process_all()
    assert net.read_states[1] == []
    net.stabilize()
    (rs,) = net.read_states[1]
    assert rs.request_ctx == b"r1"
    assert rs.index == net.nodes[1].raft.log.committed
    assert net.nodes[1].raft.log.term(rs.index) == net.nodes[1].raft.term


def test_read_index_needs_a_heartbeat_quorum(net):
    net.elect(1)
    net.isolate(1)
    net.nodes[1].read_index(b"lonely")
    net.stabilize()
    assert net.read_states[1] == []  # no quorum confirmed leadership
    net.heal()
    net.nodes[1].read_index(b"second")
    net.stabilize()
    # the quorum for "second" confirms the earlier request too
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"lonely", b"second"]


def test_read_index_from_a_follower_is_answered_by_the_leader(net):
    net.elect(1)
    net.propose(1, b"a")
    net.stabilize()
    net.nodes[3].read_index(b"f")
    net.stabilize()
    (rs,) = net.read_states[3]
    assert rs.request_ctx == b"f" and rs.index == net.nodes[1].raft.log.committed


def test_lease_based_read_index_answers_without_heartbeats():
    net = Network([1, 2, 3], seed=1, read_only_lease_based=True)
    net.elect(1)
    net.isolate(1)
    net.nodes[1].read_index(b"lease")
    net.stabilize()
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"lease"]


def test_single_node_read_index_is_immediate():
    net = Network([1], seed=1)
    net.elect(1)
    net.nodes[1].read_index(b"solo")
    net.stabilize()
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"solo"]


# ---------------------------------------------------------------- leader transfer


def test_transfer_to_an_up_to_date_follower(net):
    net.elect(1)
    net.nodes[1].transfer_leader(2)
    net.stabilize()
    assert net.leader() == 2
    assert net.nodes[1].lead == 2 and net.nodes[3].lead == 2


def test_transfer_to_a_lagging_follower_catches_it_up_first(net):
    net.elect(1)
    net.isolate(3)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.stabilize()
    net.heal()
    net.nodes[1].transfer_leader(3)
    assert net.nodes[1].raft.lead_transferee == 3
    with pytest.raises(ProposalDropped):
        net.nodes[1].propose(b"during transfer")
    net.stabilize()
    assert net.leader() == 3
    assert net.values(3) == [b"%d" % k for k in range(5)]


def test_transfer_requested_on_a_follower_is_forwarded(net):
    net.elect(1)
    net.nodes[2].transfer_leader(3)
    net.stabilize()
    assert net.leader() == 3


def test_transfer_to_an_unreachable_node_is_abandoned(net):
    net.elect(1)
    net.isolate(3)
    net.nodes[1].transfer_leader(3)
    net.stabilize()
    assert net.nodes[1].raft.lead_transferee == 3
    net.tick(12)
    assert net.nodes[1].raft.lead_transferee == 0
    net.nodes[1].propose(b"ok again")
    net.stabilize()
    assert net.values(2)[-1] == b"ok again"


# ---------------------------------------------------------------- membership


def change(net, via, kind, node_id):
    net.nodes[via].propose_conf_change(ConfChange(kind, node_id))
    net.stabilize()


def test_add_member(net):
    net.elect(1)
    net.propose(1, b"before")
    net.stabilize()
    net.add_node(4)
    change(net, 1, ConfChangeType.ConfChangeAddNode, 4)
    net.tick(3)
    for i in (1, 2, 3, 4):
        assert net.nodes[i].raft.trk.voters == {1, 2, 3, 4}, i
    assert net.values(4) == [b"before"]
    net.crash(2)
    net.crash(3)
    net.propose(1, b"needs 3 of 4")
    net.stabilize()
    assert net.values(4) == [b"before"]  # no quorum of the 4 voters
    net.restart(2)
    net.tick(3)
    assert net.values(4) == [b"before", b"needs 3 of 4"]


def test_only_one_conf_change_may_be_pending(net):
    net.elect(1)
    net.add_node(4)
    net.add_node(5)
    net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 4))
    with pytest.raises(ProposalDropped, match="pending"):
        net.nodes[1].propose_conf_change(ConfChange(ConfChangeType.ConfChangeAddNode, 5))
    net.stabilize()
    change(net, 1, ConfChangeType.ConfChangeAddNode, 5)
    assert net.nodes[1].raft.trk.voters == {1, 2, 3, 4, 5}


def test_remove_member(net):
    net.elect(1)
    change(net, 1, ConfChangeType.ConfChangeRemoveNode, 3)
    assert net.nodes[1].raft.trk.voters == {1, 2}
    assert net.nodes[2].raft.trk.voters == {1, 2}
    net.crash(3)
    net.propose(1, b"two voters")
    net.stabilize()
    assert net.values(2)[-1] == b"two voters"


def test_remove_the_leader_hands_over_quickly(net):
    net.elect(1)
    change(net, 1, ConfChangeType.ConfChangeRemoveNode, 1)
    net.tick(2)
    new = net.leader()
    assert new in (2, 3)
    assert net.nodes[new].raft.trk.voters == {2, 3}
    assert net.nodes[1].raft.state == StateType.StateFollower
    assert 1 not in net.nodes[1].raft.trk.voters
    net.propose(new, b"after removal")
    net.stabilize()
    other = ({2, 3} - {new}).pop()
    assert net.values(other)[-1] == b"after removal"
    net.tick(30)  # the removed node never campaigns
    assert net.nodes[1].raft.state == StateType.StateFollower


def test_learner_add_and_promote(net):
    net.elect(1)
    net.add_node(4)
    change(net, 1, ConfChangeType.ConfChangeAddLearnerNode, 4)
    net.tick(2)
    assert net.nodes[1].raft.trk.learners == {4}
    assert net.nodes[4].raft.is_learner
    net.propose(1, b"to learner")
    net.stabilize()
    assert net.values(4) == [b"to learner"]
    # a learner never campaigns and is not counted for commit
    net.isolate(4)
    net.tick(40)
    assert net.nodes[4].raft.state == StateType.StateFollower
    net.heal()
    net.crash(2)
    net.crash(3)
    net.propose(1, b"no quorum")
    net.stabilize()
    assert net.values(4) == [b"to learner"]
    net.restart(2)
    net.restart(3)
    net.tick(3)
    change(net, net.leader(), ConfChangeType.ConfChangeAddNode, 4)
    net.tick(2)
    assert net.nodes[1].raft.trk.voters == {1, 2, 3, 4}
    assert not net.nodes[4].raft.is_learner
    net.nodes[net.leader()].transfer_leader(4)  # a voter now: it can lead
    net.stabilize()
    assert net.leader() == 4


# ---------------------------------------------------------------- restart / storage


def test_restart_from_storage(net):
    net.elect(1)
    for k in range(5):
        net.propose(1, b"%d" % k)
    net.stabilize()
    term = net.nodes[1].raft.term
    net.compact(2)
    for i in (1, 2, 3):
        net.crash(i)
    for i in (1, 2, 3):
        net.restart(i)
        r = net.nodes[i].raft
        assert r.term == term
        assert r.log.committed == net.storages[i].hard_state.commit
    assert net.values(2) == [b"%d" % k for k in range(5)]  # from the snapshot
    lead = wait_single_leader(net)
    net.propose(lead, b"again")
    net.stabilize()
    for i in (1, 2, 3):
        assert net.values(i) == [b"%d" % k for k in range(5)] + [b"again"]


def test_vote_survives_a_restart():
    net = Network([1, 2, 3], seed=1)
    net.nodes[1].campaign()
    net.stabilize()
    voted = net.nodes[2].raft.vote
    term = net.nodes[2].raft.term
    net.crash(2)
    net.restart(2)
    assert (net.nodes[2].raft.term, net.nodes[2].raft.vote) == (term, voted)


# ---------------------------------------------------------------- API edges


def test_proposal_without_leader_raises_not_leader():
    net = Network([1, 2, 3], seed=1)
    with pytest.raises(NotLeader) as e:
        net.nodes[1].propose(b"x")
    assert e.value.leader == 0


def test_disabled_forwarding_names_the_leader():
    net = Network([1, 2, 3], seed=1, disable_proposal_forwarding=True)
    net.elect(1)
    with pytest.raises(NotLeader) as e:
        net.nodes[2].propose(b"x")
    assert e.value.leader == 1


def test_ready_must_be_advanced_before_the_next():
    node = RawNode(Config(1), MemoryStorage(), peers=[1])
    rd = node.ready()
    with pytest.raises(RuntimeError, match="advance"):
        node.ready()
    node.advance(rd)
    assert not node.has_ready()


def test_single_node_commits_alone():
    st = MemoryStorage()
    node = RawNode(Config(1), st, peers=[1])
    rd = node.ready()
    st.append(rd.entries)
    st.set_hard_state(rd.hard_state)
    node.advance(rd)
    node.campaign()
    node.propose(b"hello")
    rd = node.ready()
    assert rd.soft_state.raft_state == StateType.StateLeader
    assert [e.data for e in rd.committed_entries] == [b"", b"hello"]
    assert rd.must_sync and rd.hard_state.commit == 3
    assert node.status()["state"] == "StateLeader"


def test_bad_config_is_rejected_clearly():
    with pytest.raises(ValueError, match="election_tick"):
        RawNode(Config(1, election_tick=1, heartbeat_tick=1), MemoryStorage(), peers=[1])
    with pytest.raises(ValueError, match="positive"):
        RawNode(Config(0), MemoryStorage(), peers=[1])
    st = MemoryStorage()
    node = RawNode(Config(1), st, peers=[1])
    rd = node.ready()
    st.append(rd.entries)
    with pytest.raises(ValueError, match="already holds a log"):
        RawNode(Config(1), st, peers=[1])


def test_local_message_types_are_refused_from_the_network(net):
    from agents.etcd.raft import Message

    with pytest.raises(ValueError, match="local"):
        net.nodes[1].step(Message(MT.MsgHup, from_=2))


def test_many_reads_share_one_heartbeat_round(net):
    net.elect(1)
    for k in range(50):
        net.nodes[1].read_index(b"r%d" % k)
    rd = net.nodes[1].ready()
    beats = [m for m in rd.messages if m.type == MT.MsgHeartbeat]
    assert sorted(m.to for m in beats) == [2, 3]
    assert all(m.context == b"r49" for m in beats)
    net._persist(1, rd)
    for m in rd.messages:
        net._send(m)
    net._apply(1, net.nodes[1], rd)
    net.nodes[1].advance(rd)
    net.stabilize()
    assert [rs.request_ctx for rs in net.read_states[1]] == [b"r%d" % k for k in range(50)]


def test_status_reports_progress_on_the_leader(net):
    net.elect(1)
    st = net.nodes[1].status()
    assert (st["id"], st["lead"], st["state"]) == (1, 1, "StateLeader")
    assert st["commit"] == st["applied"] == 4
    assert set(st["progress"]) == {1, 2, 3}
    assert st["progress"][2]["state"] == "Replicate" and st["progress"][2]["match"] == 4
    assert net.nodes[2].status()["progress"] == {}


def test_new_member_joins_from_a_snapshot_taken_before_it_was_added(net):
    net.elect(1)
    for k in range(10):
        net.propose(1, b"%d" % k)
    net.stabilize()
    for i in (1, 2, 3):
        net.compact(i)  # the snapshot's configuration does not list node 4 yet
    net.add_node(4)
    change(net, 1, ConfChangeType.ConfChangeAddNode, 4)
    net.tick(3)
    assert net.storages[4].snapshot().metadata.index > 0
    assert net.values(4) == [b"%d" % k for k in range(10)]
    assert net.nodes[4].raft.trk.voters == {1, 2, 3, 4}


def test_unreachable_report_moves_a_follower_back_to_probing(net):
    net.elect(1)
    assert net.nodes[1].status()["progress"][2]["state"] == "Replicate"
    net.nodes[1].report_unreachable(2)
    assert net.nodes[1].status()["progress"][2]["state"] == "Probe"
    net.propose(1, b"x")
    net.tick(2)
    assert net.nodes[1].status()["progress"][2]["state"] == "Replicate"
    assert net.values(2) == [b"x"]
