"""``python -m bench [options]``: the benchmark report (same as ``vbkernels bench``)."""

import sys

from vbkernels.benchmark import main

sys.exit(main())
