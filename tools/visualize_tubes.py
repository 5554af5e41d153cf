#!/usr/bin/env python
"""Draw every tube AAMN scored on data-set samples (``aamn.utils.visualizer.draw_tube_panel``).

The command line of ``aamn.cli.visualize_tubes``: ``python -m aamn.cli.visualize_tubes`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.visualize_tubes import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.visualize_tubes import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
