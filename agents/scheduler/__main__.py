"""python -m agents.scheduler --kubeconfig FILE [--leader-elect] ..."""

import sys

from .main import main

sys.exit(main())
