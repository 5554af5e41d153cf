"""Files and folders: writing that never leaves a half-written file behind, the data-set root,
cache folders, and the ``i/n`` shard option of the data-preparation scripts."""

import argparse
import hashlib
import os
import tempfile
from contextlib import contextmanager

__all__ = ["atomic_path", "cache_dir", "datasets_root", "parse_shard", "pid_alive"]


def datasets_root() -> str:
    """``$AAMN_DATASETS``, default ``./datasets`` (the convention of detectron2's
    ``DETECTRON2_DATASETS``): where the data sets are looked for and the synthetic one is
    written."""
    return os.path.expanduser(os.environ.get("AAMN_DATASETS", "datasets"))


def cache_dir(preferred: str, kind: str, key: str) -> str:
    """A writable cache folder: ``preferred`` (created if needed) when it can be written, else
    ``$AAMN_CACHE/<kind>/<hash of key>`` (``$AAMN_CACHE`` defaults to ``~/.cache/aamn``),
    created."""
    try:
        os.makedirs(preferred, exist_ok=True)
        if os.access(preferred, os.W_OK):
            return preferred
    except OSError:
        pass
    base = os.environ.get("AAMN_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "aamn"))
    folder = os.path.join(
        base, kind, hashlib.sha1(os.path.abspath(key).encode("utf-8")).hexdigest()[:12]
    )
    os.makedirs(folder, exist_ok=True)
    return folder


def parse_shard(text: str):
    """``--shard i/n`` (an ``argparse`` type): ``"i/n"`` -> ``(i, n)`` with ``0 <= i < n``."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard must be i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"--shard i/n needs 0 <= i < n, got {text!r}")
    return i, n


@contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The folder is created if needed.  On an exception the temporary file is removed and ``path``
    is untouched (a reader never sees a partial file).  ``suffix`` is kept at the end of the
    temporary name (OpenCV picks the container from it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix, dir=folder
    )
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def pid_alive(pid) -> bool:
    """Whether the process ``pid`` (an int or its text) runs on this machine."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True
