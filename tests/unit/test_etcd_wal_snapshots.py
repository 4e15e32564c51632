"""WAL recovery rules, snapshot files, and the restore command's data directory."""

from __future__ import annotations

import os

import pytest

from agents.etcd import snapfile, wal
from agents.etcd.config import parse_args
from agents.etcd.restore import RestoreError, restore
from agents.etcd.state import StateMachine
from agents.etcdapi import rpc_pb2

pytestmark = pytest.mark.unit


def write_log(d, n: int = 5) -> str:
    w = wal.Wal(str(d))
    for i in range(1, n + 1):
        w.append(wal.encode_entry(i, 1, 0, b"data%d" % i))
    w.append(wal.encode_hard_state(1, 7, n))
    w.write()
    w.sync()
    w.close()
    (seg,) = [p for p in os.listdir(d) if p.endswith(".wal")]
    return os.path.join(d, seg)


def test_round_trip(tmp_path) -> None:
    write_log(tmp_path)
    got = wal.read_wal(str(tmp_path))
    assert [e[0] for e in got.entries] == [1, 2, 3, 4, 5]
    assert got.entries[2][3] == b"data3"
    assert got.hard_state == (1, 7, 5) and got.truncated_bytes == 0


def test_torn_tail_is_cut_off(tmp_path) -> None:
    seg = write_log(tmp_path)
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.truncate(size - 5)  # the hard state record was half written
    got = wal.read_wal(str(tmp_path))
    assert [e[0] for e in got.entries] == [1, 2, 3, 4, 5] and got.hard_state is None
    assert got.truncated_bytes > 0
    assert os.path.getsize(seg) < size - 5  # repaired on disk
    assert wal.read_wal(str(tmp_path)).truncated_bytes == 0


def test_corrupt_last_record_is_a_torn_tail(tmp_path) -> None:
    seg = write_log(tmp_path)
    with open(seg, "r+b") as f:
        f.seek(-2, os.SEEK_END)
        f.write(b"\xff\xff")
    got = wal.read_wal(str(tmp_path))
    assert got.hard_state is None and len(got.entries) == 5


def test_corrupt_middle_refuses_to_start(tmp_path) -> None:
    seg = write_log(tmp_path)
    with open(seg, "r+b") as f:
        f.seek(30)  # inside the first entry's payload
        f.write(b"\x00\x01\x02")
    with pytest.raises(wal.WalCorrupt, match="corrupt at byte 0: checksum mismatch with more records after it"):
        wal.read_wal(str(tmp_path))


def test_overwritten_tail_replaces_entries(tmp_path) -> None:
    w = wal.Wal(str(tmp_path))
    for i in (1, 2, 3):
        w.append(wal.encode_entry(i, 1, 0, b"old"))
    w.append(wal.encode_entry(2, 2, 0, b"new"))  # a new leader overwrote index 2..
    w.write()
    w.close()
    got = wal.read_wal(str(tmp_path))
    assert [(e[0], e[1], e[3]) for e in got.entries] == [(1, 1, b"old"), (2, 2, b"new")]


def test_rewrite_keeps_only_given_records(tmp_path) -> None:
    w = wal.Wal(str(tmp_path))
    for i in range(1, 4):
        w.append(wal.encode_entry(i, 1, 0, b"x"))
    w.write()
    w.rewrite([wal.encode_entry(3, 1, 0, b"x"), wal.encode_hard_state(1, 0, 3)])
    w.append(wal.encode_entry(4, 1, 0, b"y"))
    w.close()
    assert len([p for p in os.listdir(tmp_path) if p.endswith(".wal")]) == 1
    got = wal.read_wal(str(tmp_path))
    assert [e[0] for e in got.entries] == [3, 4] and got.hard_state == (1, 0, 3)


def test_snapshot_file_format_and_damage(tmp_path) -> None:
    sf = snapfile.SnapshotFile(10, 2, (1, 2, 3), (), b"state")
    blob = snapfile.encode(sf)
    assert len(blob) % 512 == 32  # what etcdctl snapshot save checks
    assert snapfile.decode(blob) == sf
    with pytest.raises(snapfile.SnapshotError, match="sha256 mismatch"):
        snapfile.decode(blob[:100] + b"X" + blob[101:])
    d = snapfile.SnapDir(str(tmp_path), keep=2)
    for i in (1, 2, 3):
        d.save(snapfile.SnapshotFile(i, 1, (1,), (), b"s%d" % i))
    assert d.load_newest().index == 3 and len(os.listdir(tmp_path)) == 2


def test_restore_builds_a_data_dir_for_the_new_cluster(tmp_path) -> None:
    sm = StateMachine()
    sm.store.put(rpc_pb2.PutRequest(key=b"k", value=b"v"))
    src = tmp_path / "snap.db"
    src.write_bytes(snapfile.encode(snapfile.SnapshotFile(40, 3, (9,), (), sm.dump())))
    cfg = parse_args(["--name", "a", "--data-dir", str(tmp_path / "a"),
                      "--initial-cluster", "a=http://127.0.0.1:1,b=http://127.0.0.1:2"])
    restore(str(src), cfg)
    snap = snapfile.SnapDir(str(tmp_path / "a" / "member" / "snap")).load_newest()
    assert snap.index == 2 and len(snap.voters) == 2
    got = StateMachine()
    got.load(snap.data)
    assert got.store.get(b"k").value == b"v"
    assert sorted(m.name for m in got.members.values()) == ["a", "b"]
    assert wal.read_wal(str(tmp_path / "a" / "member" / "wal")).hard_state == (1, 0, 2)
    with pytest.raises(RestoreError, match="not empty"):
        restore(str(src), cfg)
