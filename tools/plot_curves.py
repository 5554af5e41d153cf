#!/usr/bin/env python
"""Draw the training curves of runs (losses, accuracies, learning rate, evaluations).

The command line of ``aamn.cli.plot_curves``: ``python -m aamn.cli.plot_curves`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.plot_curves import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.plot_curves import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
