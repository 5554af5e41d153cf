#!/usr/bin/env python
"""Score tools/infer.py's output layout with the DAVIS protocol (J, F, J&F).

The command line of ``aamn.cli.eval_jf``: ``python -m aamn.cli.eval_jf`` runs the same (its
docstring, or ``--help``, says more)."""

import sys

from aamn.cli.eval_jf import *  # noqa: F401,F403  (its functions, for imports of the script)
from aamn.cli.eval_jf import main
from aamn.utils.cli import run_tool

if __name__ == "__main__":
    sys.exit(run_tool(main))
