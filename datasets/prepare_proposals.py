#!/usr/bin/env python
"""Write the external detector's top-K boxes for every frame of every video of data sets.

The command line of ``aamn.cli.prepare_proposals``: ``python -m aamn.cli.prepare_proposals``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.prepare_proposals import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.prepare_proposals import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
