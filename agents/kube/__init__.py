"""A small client-go style controller framework shared by the scheduler, the controller
manager, the kubelet and kube-proxy: a REST client, informers (list + watch into a
read-only cache), a rate-limited work queue of keys, the worker loop, leader election
through a Lease, and a fake API for controller tests."""
