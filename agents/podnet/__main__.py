"""python -m agents.podnet --kubeconfig FILE --node-name NAME"""

import sys

from .main import main

sys.exit(main())
