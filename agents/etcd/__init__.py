"""etcd peer: a Raft-replicated MVCC key-value store speaking the etcd v3 gRPC API.

Run it like etcd (same flag names): ``python -m agents.etcd --name n1 --data-dir D ...``;
``python -m agents.etcd snapshot restore FILE ...`` turns a saved snapshot into a data dir.

Modules, from the pure core outwards:
- ``mvcc``: the key-value store (revisions, ranges, txns, compaction, leases, watch history)
- ``state``: Raft entry format and the replicated state machine (store + membership)
- ``wal``, ``snapfile``: write-ahead log and snapshot files (recovery rules in each)
- ``raft/``: the Raft core (another owner); ``peer``: the member-to-member transport
- ``node``: the member's loop tying Raft, WAL, snapshots and the state machine together
- ``lessor``, ``watch``: lease clocks and watcher delivery
- ``api``: the gRPC services; ``server``: the process (gRPC + /health + /metrics)
- ``config``: etcd's flags and member/cluster IDs; ``restore``: the restore command
- ``localcluster``: start members (ours or real etcd) as local processes, for tests/bench
"""
