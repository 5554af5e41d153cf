"""The code follows the project's lint and format settings (ruff.toml: detectron2's line length)."""

import os
import shutil
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RUFF = shutil.which("ruff") or os.path.join(
    os.path.dirname(os.path.realpath(__import__("sys").executable)), "ruff"
)


@pytest.mark.parametrize("command", [["check", "."], ["format", "--check", "."]])
def test_ruff(command):
    if not os.path.isfile(RUFF):
        pytest.fail("ruff is not installed: `pip install -e .[dev]` (make setup) installs it")
    proc = subprocess.run([RUFF, *command], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
