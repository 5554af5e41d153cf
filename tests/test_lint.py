"""The code follows the project's lint and format settings (ruff.toml: detectron2's line length)."""

import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    if importlib.util.find_spec("ruff") is None:
        pytest.fail("ruff is not installed: `pip install -e .[dev]` (make setup) installs it")
    proc = subprocess.run(
        [sys.executable, "-m", "ruff", *command], cwd=REPO, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
