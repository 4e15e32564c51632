"""kube-proxy: makes Service ClusterIPs and NodePorts reach ready endpoints.

Pipeline (every step but the last is pure):

    services + endpoints + NodeInfo --model.compute_model--> ProxyModel
    ProxyModel --nft.desired_state / iptables.desired_state--> a backend state
    (old state, new state) --render_changes--> one `nft -f` / `iptables-restore` transaction
    backend.apply(text)  (the only I/O)

proxier.Proxier runs the informers and the sync loop; main.py is the daemon.
"""
