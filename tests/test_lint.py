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


def _package_modules():
    import ast

    root = os.path.join(REPO, "aamn")
    for folder, _, files in os.walk(root):
        if "configs" in os.path.relpath(folder, root).split(os.sep):
            continue
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                yield path, ast.parse(open(path, encoding="utf-8").read(), path)


def test_the_package_runs_no_script_and_computes_no_repository_path():
    """The package runs its workers as modules (``python -m aamn....``), never a script of
    ``tools/`` or ``datasets/``, and no path it computes from its own files leads out of it."""
    import ast

    package = os.path.join(REPO, "aamn")
    scripts, outside = [], []
    for path, tree in _package_modules():
        for node in ast.walk(tree):
            if isinstance(node, (ast.List, ast.Tuple)):  # a command line's elements
                for element in node.elts:
                    value = getattr(element, "value", None)
                    if isinstance(value, str) and value.endswith(".py") and "/" in value:
                        scripts.append(f"{path}: {value}")
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "dirname":
                depth, inner = 1, node.args[0] if node.args else None
                while isinstance(inner, ast.Call):
                    depth += getattr(inner.func, "attr", "") == "dirname"
                    inner = inner.args[0] if inner.args else None
                if isinstance(inner, ast.Name) and inner.id == "__file__":
                    reached = path
                    for _ in range(depth):
                        reached = os.path.dirname(reached)
                    if os.path.commonpath([package, reached]) != package:
                        outside.append(f"{path}: {depth} x dirname(__file__)")
    assert scripts == [] and outside == [], scripts + outside


def test_command_examples_in_docstrings_keep_their_line_breaks():
    """A shell line continuation written as one backslash in a docstring joins two lines of the
    ``--help`` text ("... 60 120         --seeds 1"): written ``\\\\``, the backslash is shown."""
    import ast
    import re

    modules = list(_package_modules())
    for folder in ("tools", "datasets"):
        base = os.path.join(REPO, folder)
        for name in sorted(n for n in os.listdir(base) if n.endswith(".py")):
            path = os.path.join(base, name)
            modules.append((path, ast.parse(open(path, encoding="utf-8").read(), path)))
    joined = []
    for path, tree in modules:
        nodes = [tree] + [
            n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))
        ]
        for node in nodes:
            doc = ast.get_docstring(node, clean=False) or ""
            joined += [
                f"{os.path.relpath(path, REPO)}: {line.strip()}"
                for line in doc.splitlines()
                if re.search(r"\S {4,}--?[a-z]", line)
            ]
    assert not joined, "\n".join(joined)
