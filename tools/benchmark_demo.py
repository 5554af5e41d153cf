#!/usr/bin/env python
"""Where the demo's time goes on a video, with and without the frames resized first.

The command line of ``aamn.cli.benchmark_demo``: ``python -m aamn.cli.benchmark_demo``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.benchmark_demo import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.benchmark_demo import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
