#!/usr/bin/env python
"""Whether every number of a report is in the results it reports.

The command line of ``aamn.cli.check_numbers``: ``python -m aamn.cli.check_numbers`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.check_numbers import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
