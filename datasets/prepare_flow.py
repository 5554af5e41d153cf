#!/usr/bin/env python
"""Compute the optical-flow cache of every video of an A2D- or J-HMDB-Sentences-layout tree.

The command line of ``aamn.cli.prepare_flow``: ``python -m aamn.cli.prepare_flow`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.prepare_flow import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.prepare_flow import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
