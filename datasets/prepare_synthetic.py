#!/usr/bin/env python
"""Write the synthetic actor-action benchmark in the A2D Sentences and J-HMDB Sentences layouts.

The command line of ``aamn.cli.prepare_synthetic``: ``python -m aamn.cli.prepare_synthetic``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.prepare_synthetic import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.prepare_synthetic import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
