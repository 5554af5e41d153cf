#!/usr/bin/env python
"""Segment sentences in your own videos (``aamn.engine.VideoPredictor``) and draw the result.

The command line of ``aamn.cli.demo``: ``python -m aamn.cli.demo`` runs the
same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.demo import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.demo import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
