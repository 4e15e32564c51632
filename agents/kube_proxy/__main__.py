"""python -m agents.kube_proxy --kubeconfig FILE --node-name NODE [--mode nftables|iptables]"""

import sys

from .main import main

sys.exit(main())
