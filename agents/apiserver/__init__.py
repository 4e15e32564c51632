"""Kubernetes-compatible API server over the etcd v3 gRPC API (`python -m agents.apiserver`)."""
