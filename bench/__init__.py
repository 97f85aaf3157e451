# -*- test-case-name: tests.test_bench_harness -*-
"""
Benchmarks for linkerpy.

C{python -m bench} (or C{bench/run}) measures linkerpy side by side with
nginx and HAProxy on the local machine; see C{bench/README.md}.  Nothing in
this package is a pass/fail test.
"""
