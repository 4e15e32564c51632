"""python -m agents.controller_manager --kubeconfig FILE [--leader-elect]"""

import sys

from .main import main

sys.exit(main())
