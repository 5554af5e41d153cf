#!/usr/bin/env python
"""Install detectron2 into the running Python environment, or report the one already there.

detectron2 is not published on PyPI under its own name.  This script follows the project's
recipe (see README, "Which detectron2"):

1. If ``import detectron2`` already works (for example upstream main, installed by the user from
   its git repository), it is kept: the script prints its version and location and exits.
2. Otherwise it fetches the PyPI sdist ``pb1-detectron2==0.6`` (upstream v0.6's Python package,
   unchanged), checks its SHA-256, and builds it *without* the C++/CUDA extension.  In place of the
   compiled ``detectron2._C`` it installs a placeholder module whose attribute access raises an
   ``ImportError`` naming the missing op.  Everything detectron2 implements in Python (and on top of
   torchvision's RoIAlign / NMS) works; rotated boxes, detectron2's DeformConv and the fast COCO
   evaluator do not.

Usage::

    python tools/install_detectron2.py            # install if missing, else report
    python tools/install_detectron2.py --force    # rebuild the fallback even if one is importable
"""

import argparse
import hashlib
import html.parser
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DEFAULT_INDEX = "https://pypi.org/simple"

# The placeholder for the compiled extension.  Module-level __getattr__ (PEP 562) makes
# ``from detectron2 import _C`` succeed and turns the first use of an op into a clear error.
PLACEHOLDER_C = '''"""Placeholder for detectron2's compiled extension (not built here).

This detectron2 was built by the AAMN project's tools/install_detectron2.py without its C++/CUDA
sources.  Python code and torchvision-backed ops (RoIAlign, NMS) work; the ops below do not.
Install upstream detectron2 from its repository to get them.
"""

BUILT_WITHOUT_OPS = True


# What detectron2.utils.collect_env (run by default_setup) asks of a built extension.
def get_compiler_version():
    return "not built (detectron2 without C++/CUDA ops)"


def get_cuda_version():
    return "not built (detectron2 without C++/CUDA ops)"


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__") and name.endswith("__"):
        raise AttributeError(name)
    raise ImportError(
        f"detectron2._C.{name} is unavailable: this detectron2 was built without the C++/CUDA ops "
        "(rotated boxes, deformable convolution, the fast COCO evaluator). Use the pure-Python "
        "paths (e.g. COCOEvaluator(use_fast_impl=False), torchvision.ops.deform_conv2d) or install "
        "upstream detectron2 from its git repository."
    )
'''


def log(msg):
    print(f"[install_detectron2] {msg}", flush=True)


def find_existing(python):
    """Return (version, location) of an importable detectron2, or None."""
    code = (
        "import detectron2, os; print(detectron2.__version__); "
        "print(os.path.dirname(detectron2.__file__))"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        return None
    version, location = proc.stdout.strip().splitlines()[-2:]
    return version, location


class _LinkParser(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            if href:
                self.links.append(href)


def sdist_url(index):
    """Find the sdist's URL on a PEP 503 simple index."""
    page = f"{index.rstrip('/')}/{SDIST_NAME}/"
    with urllib.request.urlopen(page, timeout=60) as resp:
        parser = _LinkParser()
        parser.feed(resp.read().decode("utf-8", "replace"))
    for href in parser.links:
        if href.split("#")[0].endswith(SDIST_FILE):
            return urllib.parse.urljoin(page, href.split("#")[0])
    raise RuntimeError(f"{SDIST_FILE} is not listed on the package index {page}")


def fetch_sdist(cache_dir):
    """Download (once) and verify the sdist; return its path."""
    os.makedirs(cache_dir, exist_ok=True)
    path = os.path.join(cache_dir, SDIST_FILE)
    if not (os.path.exists(path) and sha256(path) == SDIST_SHA256):
        index = os.environ.get("PIP_INDEX_URL", DEFAULT_INDEX)
        url = sdist_url(index)
        log(f"downloading {url}")
        tmp = path + ".part"
        with urllib.request.urlopen(url, timeout=300) as resp, open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out)
        digest = sha256(tmp)
        if digest != SDIST_SHA256:
            os.remove(tmp)
            raise RuntimeError(
                f"{SDIST_FILE}: SHA-256 {digest} does not match the expected {SDIST_SHA256}"
            )
        os.replace(tmp, path)
    return path


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# detectron2 v0.6 uses aliases that numpy 1.24 and Pillow 10 removed; upstream main later replaced
# them the same way (np.bool -> bool, ..., Image.LINEAR -> Image.BILINEAR).  Applied to the
# fallback build so that current numpy and Pillow releases install (no numpy<1.24 / Pillow<10 pin).
REMOVED_ALIASES = [
    (re.compile(r"\bnp\.(bool|int|float|complex|object|str)\b(?![\w.])"), r"\1"),
    (re.compile(r"\bImage\.LINEAR\b"), "Image.BILINEAR"),
]


def patch_removed_aliases(package_dir):
    """Rewrite numpy / Pillow aliases removed upstream in every ``.py`` under ``package_dir``
    (idempotent).  Returns the files changed."""
    changed = []
    for dirpath, _, files in os.walk(package_dir):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(dirpath, name)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            new = text
            for pattern, repl in REMOVED_ALIASES:
                new = pattern.sub(repl, new)
            if new != text:
                with open(path, "w", encoding="utf-8") as f:
                    f.write(new)
                changed.append(path)
    return changed


def patch_source(src):
    """Empty the extension list, drop unusable requirements, replace the aliases numpy / Pillow
    removed, add the _C placeholder."""
    setup_py = os.path.join(src, "setup.py")
    text = open(setup_py).read()
    replacements = {
        "ext_modules=get_extensions(),": "ext_modules=[],",
        'cmdclass={"build_ext": torch.utils.cpp_extension.BuildExtension},': "",
        # black is only used to pretty-print LazyConfig files; the pinned 2021 beta breaks on
        # current click.  detectron2 falls back to unformatted output without it.
        '"black==21.4b2",': "",
        '"panopticapi @ https://github.com/cocodataset/panopticapi/archive/master.zip",': "",
        # The sdist ships the model-zoo configs inside the package; install them.
        'package_data={"detectron2.model_zoo": get_model_zoo_configs()},': (
            'package_data={"detectron2.model_zoo": '
            '["configs/*.yaml", "configs/**/*.yaml", "configs/**/*.py"]},'
        ),
    }
    for old, new in replacements.items():
        if old not in text:
            raise RuntimeError(f"{setup_py}: expected text not found, cannot patch: {old!r}")
        text = text.replace(old, new)
    with open(setup_py, "w") as f:
        f.write(text)
    patch_removed_aliases(os.path.join(src, "detectron2"))
    with open(os.path.join(src, "detectron2", "_C.py"), "w") as f:
        f.write(PLACEHOLDER_C)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--force", action="store_true", help="build the fallback even if detectron2 imports"
    )
    parser.add_argument(
        "--cache-dir",
        default=os.path.join(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".cache", "detectron2"
        ),
    )
    args = parser.parse_args(argv)

    python = sys.executable
    existing = find_existing(python)
    if existing and not args.force:
        version, location = existing
        placeholder = os.path.join(location, "_C.py")
        built_without = os.path.exists(placeholder)
        if built_without and open(placeholder).read() != PLACEHOLDER_C:
            with open(placeholder, "w") as f:  # an earlier fallback: refresh its placeholder
                f.write(PLACEHOLDER_C)
            log(f"updated the _C placeholder at {placeholder}")
        if built_without:  # an earlier fallback, built before the alias fixes
            for path in patch_removed_aliases(location):
                log(f"replaced numpy / Pillow aliases removed upstream in {path}")
        kind = (
            "the CPU fallback built without C++/CUDA ops"
            if built_without
            else "with its compiled ops"
        )
        log(f"detectron2 {version} already importable from {location} ({kind}); nothing to do")
        return 0

    path = fetch_sdist(args.cache_dir)
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(path) as tar:
            tar.extractall(tmp)
        src = os.path.join(tmp, f"{SDIST_NAME}-{SDIST_VERSION}")
        patch_source(src)
        log("building detectron2 v0.6 without its C++/CUDA extension")
        subprocess.run([python, "-m", "pip", "install", "--no-build-isolation", src], check=True)
    version, location = find_existing(python)
    log(f"installed detectron2 {version} at {location}")
    log(
        "built without the C++/CUDA ops: rotated boxes, DeformConv and the fast COCO evaluator are "
        "unavailable (detectron2._C raises a clear ImportError on use)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
