"""``python -m simcore``: the ``allocsim`` command line (see :mod:`allocsim.cli`).

The command line lives in the ``allocsim`` application package because it wires the
model to ``workloads`` and ``reports``; ``simcore`` itself never imports them.
"""

import sys

from allocsim.cli import main

sys.exit(main())
