"""python -m agents.kubelet --config /etc/lab/kubelet/config.yaml"""

import sys

from .main import main

sys.exit(main())
