"""`python -m processor.cli`: how worker processes are started (supervisor, tests, benchmarks)."""

import sys

from processor.cli import main

sys.exit(main())
