"""The kubelet: registers its Node, renews its Lease, and makes the pods bound to it run
on the container runtime (agents.runtime); serves /containerLogs and /exec over HTTPS
for the API server's pods/log and pods/exec."""
