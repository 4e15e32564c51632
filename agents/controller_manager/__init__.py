"""The controller manager: level-triggered controllers on agents.kube (ReplicaSet,
Deployment, ...), leader-elected so that one instance of several acts."""
