"""The scheduler: binds unscheduled pods to nodes. This package holds its pure core
(quantities, node bookkeeping, filters, scores, the filter → score → pick framework);
the daemon that watches the API server is built on agents.kube."""
