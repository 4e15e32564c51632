"""Simulated nodes (kwok-style): fake Nodes that register, keep their Leases fresh and
report the pods bound to them as Running, so the control plane can be tested and
benchmarked at scale without real kubelets."""
