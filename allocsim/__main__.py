"""``python -m allocsim``: the ``allocsim`` command line (see :mod:`allocsim.cli`)."""

import sys

from allocsim.cli import main

sys.exit(main())
