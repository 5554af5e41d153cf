"""File writing that never leaves a half-written file behind."""
import os
import tempfile
from contextlib import contextmanager

__all__ = ["atomic_path"]


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
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp" + suffix,
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
