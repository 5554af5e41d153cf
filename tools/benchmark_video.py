#!/usr/bin/env python
"""Whole-video inference (``aamn.engine.VideoPredictor``): speed, and accuracy on annotated frames.

The command line of ``aamn.cli.benchmark_video``: ``python -m aamn.cli.benchmark_video``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.benchmark_video import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.benchmark_video import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
