"""python -m agents.simnodes --kubeconfig FILE --nodes N [--cpu C --memory M]"""

import sys

from .main import main

sys.exit(main())
