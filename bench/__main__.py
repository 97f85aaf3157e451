# -*- test-case-name: tests.test_bench_harness -*-
"""
C{python -m bench}: see L{bench.harness.cli}.
"""

from __future__ import annotations

import sys

from bench.harness.cli import main

if __name__ == "__main__":
    sys.exit(main())
