"""``python -m benchmarks``: see :mod:`benchmarks.run`."""

import os
import sys

# numpy's BLAS threads spin for a while after any BLAS call; on a 2-core machine they
# steal time from whatever is measured next. The simulator never needs them.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from benchmarks.run import main  # noqa: E402

sys.exit(main())
