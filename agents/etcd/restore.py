"""`snapshot restore`: turn a saved snapshot into a new member's data directory.

Like `etcdctl snapshot restore`, it keeps the keys, revisions and leases and replaces the
membership with the new cluster from --initial-cluster: every member of the new cluster
restores the same file with its own --name, and they start as a fresh Raft group whose
log begins at the snapshot.
"""

from __future__ import annotations

import os

from . import snapfile, state, wal
from .config import Config, member_id


class RestoreError(Exception):
    pass


def restore(path: str, cfg: Config) -> str:
    if os.path.exists(cfg.data_dir) and os.listdir(cfg.data_dir):
        raise RestoreError(f"data-dir {cfg.data_dir!r} exists and is not empty; restore needs a new directory")
    with open(path, "rb") as f:
        src = snapfile.decode(f.read(), path)
    sm = state.StateMachine()
    sm.load(src.data)
    sm.members = {}
    sm.removed = set()
    for name, urls in cfg.initial_members().items():
        mid = member_id(urls, cfg.initial_cluster_token)
        sm.add_member(state.Member(mid, name, urls))
    voters = tuple(sorted(sm.members))
    index, term = len(voters), 1
    member_dir = os.path.join(cfg.data_dir, "member")
    snapfile.SnapDir(os.path.join(member_dir, "snap")).save(
        snapfile.SnapshotFile(index, term, voters, (), sm.dump())
    )
    w = wal.Wal(os.path.join(member_dir, "wal"))
    w.append(wal.encode_hard_state(term, 0, index))
    w.write()
    w.sync()
    w.close()
    return f"restored snapshot {path} (revision {sm.store.rev}) into {cfg.data_dir} for {len(voters)} members"
