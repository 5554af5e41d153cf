#!/usr/bin/env python
"""A page in the browser for any of the project's models (``aamn.apps.web_demo``, on Flask).

The command line of ``aamn.cli.web_demo``: ``python -m aamn.cli.web_demo``
runs the same (its docstring, or ``--help``, says more)."""

import sys

from aamn.cli.web_demo import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.web_demo import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
