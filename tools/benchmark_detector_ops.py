#!/usr/bin/env python
"""The proposal detector's inference levers, each alone: per-image loops batched, bf16 box head.

The command line of ``aamn.cli.benchmark_detector_ops``:
``python -m aamn.cli.benchmark_detector_ops`` runs the same (its docstring, or ``--help``, says
more)."""

import sys

from aamn.cli.benchmark_detector_ops import *  # noqa: F401,F403  (its functions, for imports)
from aamn.cli.benchmark_detector_ops import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
