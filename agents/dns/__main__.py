"""python -m agents.dns --kubeconfig FILE --listen ADDR:53 --domain cluster.local [--register-endpoint-ip IP]"""

import sys

from .main import main

sys.exit(main())
