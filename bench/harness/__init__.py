# -*- test-case-name: tests.test_bench_harness -*-
"""
The side-by-side benchmark harness behind C{python -m bench}.

Modules:
  - L{bench.harness.cli}: command-line options and the top-level run.
  - L{bench.harness.procs}: starting, pinning, probing and killing processes;
    CPU time and memory read from C{/proc}.
  - L{bench.harness.install}: installing missing tools (apt-get, pip, the
    PyPy virtualenv).
  - L{bench.harness.configs}: generated configuration files for the origin,
    nginx, HAProxy and linkerpy.
  - L{bench.harness.targets}: the systems under test and how to start them.
  - L{bench.harness.loadgen}: wrk and iperf3 command lines and runs.
  - L{bench.harness.parsing}: parsers for wrk, iperf3 and C{/proc} output.
  - L{bench.harness.stats}: medians, spreads and ratios.
  - L{bench.harness.scenarios}: the HTTP, TLS, TCP and memory measurements.
  - L{bench.harness.report}: the text table, the JSON document, the chart.
  - L{bench.harness.rproxy}, L{bench.harness.idleconns}: helper programs run
    as separate processes.
"""
