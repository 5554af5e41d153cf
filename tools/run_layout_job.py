#!/usr/bin/env python
"""The synthetic benchmark's second job: the three systems on its Ref-YouTube-VOS layout, with
P@0.5 and J&F.

The command line of ``aamn.cli.run_layout_job``: ``python -m aamn.cli.run_layout_job`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.run_layout_job import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.run_layout_job import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
