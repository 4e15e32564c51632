"""etcd peer: a Raft-replicated MVCC key-value store speaking the etcd v3 gRPC API."""
