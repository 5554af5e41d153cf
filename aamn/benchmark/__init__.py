"""The side-by-side benchmark of the three systems (``tools/benchmark.py``), one job per module:
``methods`` (the systems' configs and the papers' reported numbers), ``accuracy`` (trained runs and
their spread), ``speed`` (timings in child processes, AAMN's profile and scaling) and ``report``
(the results JSON's tables, BENCHMARKS.md's section, the plots)."""
