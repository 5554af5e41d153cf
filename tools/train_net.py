#!/usr/bin/env python
"""Train and evaluate any model of the project (AAMN, or the detector that makes its proposals).

The command line of ``aamn.cli.train_net``: ``python -m aamn.cli.train_net`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.train_net import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.train_net import cli
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(cli))
