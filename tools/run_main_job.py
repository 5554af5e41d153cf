#!/usr/bin/env python
"""The main job on the synthetic benchmark, end to end (``make main``).

The command line of ``aamn.cli.run_main_job``: ``python -m aamn.cli.run_main_job``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.run_main_job import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.run_main_job import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
