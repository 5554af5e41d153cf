"""Files and folders: writing that never leaves a half-written file behind, the data-set root,
cache folders, and the ``i/n`` shard option of the data-preparation scripts."""

import argparse
import hashlib
import json
import os
import shutil
import socket
import uuid
from contextlib import contextmanager

__all__ = [
    "read_json_file",
    "URL_PREFIXES",
    "WeightsFetchError",
    "load_plain_pth",
    "local_weights_file",
    "fetch_url",
    "fetched_here",
    "in_weights_cache",
    "url_cache_path",
    "weights_cache_dir",
    "atomic_path",
    "write_json_atomic",
    "cache_dir",
    "check_plain_name",
    "datasets_root",
    "expand_inputs",
    "parse_shard",
    "pid_alive",
    "positive_int",
    "remove_dead_writers",
    "synthetic_root",
    "temporary_path",
    "writer_tag",
]


def datasets_root() -> str:
    """``$AAMN_DATASETS``, default ``./datasets`` (the convention of detectron2's
    ``DETECTRON2_DATASETS``): where the data sets are looked for and the synthetic one is
    written."""
    return os.path.expanduser(_env_folder("AAMN_DATASETS", "datasets"))


def _env_folder(name: str, default: str) -> str:
    """``$name``, or ``default`` when it is unset or set to an empty string (``AAMN_DATASETS=``
    in a script whose variable was not filled in): the empty value is named in a warning, never
    read as the current folder."""
    value = os.environ.get(name)
    if value is None:
        return default
    if not value.strip():
        import logging

        logging.getLogger(__name__).warning(
            "$%s is set but empty; using %r (unset it, or name a folder)", name, default
        )
        return default
    return value


def synthetic_root() -> str:
    """The synthetic benchmark tree the ``synthetic_*`` data set names read: ``$AAMN_SYNTHETIC``,
    default ``$AAMN_DATASETS/synthetic`` (the default size; ``datasets/prepare_synthetic.py``
    writes the other sizes to ``$AAMN_DATASETS/synthetic_<size>``)."""
    return os.path.expanduser(
        _env_folder("AAMN_SYNTHETIC", os.path.join(datasets_root(), "synthetic"))
    )


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


def check_plain_name(name, what: str, source) -> str:
    """``name`` if it is one plain path component, else ``ValueError`` naming ``what`` (e.g. "video
    id"), the value and ``source`` (the file it was read from).

    Ids read from files (a release's video ids, frame names) become paths: an id with a path
    separator, ``.`` / ``..``, a NUL or a control character could lead a writer outside its
    folder, so it is refused before it is joined to a path.
    """
    text = str(name)
    if (
        not text
        or text in (".", "..")
        or "/" in text
        or "\\" in text
        or any(ord(c) < 32 or ord(c) == 127 for c in text)
    ):
        raise ValueError(
            f"{source}: the {what} {text!r} is not a plain name (it must be one path component: "
            "no '/', '\\', '.', '..' or control characters)"
        )
    return text


def _host() -> str:
    return socket.gethostname().replace("-", "_")


def writer_tag() -> str:
    """``<host>-<pid>`` of this process: the part of a temporary name that says who writes it."""
    return f"{_host()}-{os.getpid()}"


def temporary_path(parent: str, stem: str, suffix: str = "") -> str:
    """A new temporary name ``<parent>/<stem><host>-<pid>-<random><suffix>`` for a writer of this
    process, after removing the temporaries of killed writers of the same stem
    (``remove_dead_writers``).  Nothing is created."""
    remove_dead_writers(parent, stem)
    return os.path.join(parent, f"{stem}{writer_tag()}-{uuid.uuid4().hex[:8]}{suffix}")


def remove_dead_writers(parent: str, stem: str) -> None:
    """Remove the entries ``<stem><host>-<pid>-<random>`` of ``parent`` whose writer is gone: this
    host and a process that no longer runs (temporaries of killed writers), and entries of the
    stem without a writer's tag.  Another host's, and a running writer's, are kept."""
    host = _host()
    try:
        names = os.listdir(parent)
    except OSError:
        return
    for name in names:
        if not name.startswith(stem):
            continue
        who = name[len(stem) :].split("-")
        if len(who) < 3 or (who[0] == host and not pid_alive(who[1])):
            path = os.path.join(parent, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                try:
                    os.remove(path)
                except OSError:
                    pass


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# What MODEL.WEIGHTS may name besides a local path (as detectron2 takes them).
URL_PREFIXES = ("detectron2://", "https://", "http://", "file://")


def is_weights_url(path: str) -> bool:
    return str(path).startswith(URL_PREFIXES)


# detectron2's model zoo, where ``detectron2://`` URLs point (as its PathManager resolves them).
DETECTRON2_URL_BASE = "https://dl.fbaipublicfiles.com/detectron2/"


def _resolve_url(url: str) -> str:
    return (
        DETECTRON2_URL_BASE + url[len("detectron2://") :]
        if url.startswith("detectron2://")
        else url
    )


def weights_cache_dir() -> str:
    """The cache of fetched weights: detectron2's PathManager's (``$FVCORE_CACHE``, default
    ``~/.torch/iopath_cache``)."""
    from iopath.common.file_io import get_cache_dir

    return get_cache_dir()


def url_cache_path(url: str) -> str:
    """Where ``url`` is cached: ``weights_cache_dir()`` then the URL's path, as detectron2's
    PathManager caches it (a file placed there loads without network).

    Raises:
        WeightsFetchError: the URL's path has a ``.`` / ``..`` component (``%2e%2e`` included),
            a backslash or a control character, or would lead outside the cache: a URL never
            writes outside it.
    """
    from urllib.parse import unquote, urlparse

    parsed = urlparse(_resolve_url(url))
    parts = unquote(parsed.path).split("/")
    named = [p for p in parts if p]
    bad = [
        p
        for p in named
        if p in (".", "..") or "\\" in p or any(ord(c) < 32 or ord(c) == 127 for c in p)
    ]
    if bad or not named:
        raise WeightsFetchError(
            f"{url}: the URL's path {parsed.path!r} "
            + (f"has the component {bad[0]!r}" if bad else "names no file")
            + "; a weights URL names a file by a plain path (no '.', '..', backslashes or "
            "control characters), which is cached inside $FVCORE_CACHE"
        )
    cache = os.path.realpath(weights_cache_dir())
    path = os.path.join(cache, *named)
    if os.path.commonpath([cache, os.path.realpath(path)]) != cache:
        raise WeightsFetchError(f"{url}: its cache path {path} leads outside the cache {cache}")
    return path


# The cache files this process fetched (``fetch_url``): the only ones a reader may remove.
_FETCHED = set()


def in_weights_cache(path: str) -> bool:
    """Whether ``path`` lies inside ``weights_cache_dir()`` (fetched from a URL, or placed there by
    hand)."""
    cache = os.path.realpath(weights_cache_dir())
    return os.path.commonpath([cache, os.path.realpath(path)]) == cache


def fetched_here(path: str) -> bool:
    """Whether this process fetched ``path`` from a URL (a file placed in the cache by hand, or
    fetched by an earlier run, is not)."""
    return os.path.realpath(path) in _FETCHED


# Seconds without an answer from a weights URL's server before the fetch fails.
FETCH_TIMEOUT_S = 60


def fetch_url(url: str, path: str) -> None:
    """Fetch ``url`` to ``path`` whole or not at all: the body goes to a temporary file beside
    ``path`` that is renamed into place only when it holds the ``Content-Length`` the server
    announced (a connection closed early leaves nothing).

    Raises:
        WeightsFetchError: naming the URL and what failed (no network, a refused connection,
            an HTTP error, a transfer cut short).
    """
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(_resolve_url(url), timeout=FETCH_TIMEOUT_S) as response:
            expected = response.headers.get("Content-Length")
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                got = 0
                while True:
                    chunk = response.read(1 << 20)
                    if not chunk:
                        break
                    f.write(chunk)
                    got += len(chunk)
                if expected is not None and expected.isdigit() and got != int(expected):
                    raise WeightsFetchError(
                        f"Cannot fetch {url}: the transfer was cut short ({got} of {expected} "
                        "bytes); nothing was cached, run again"
                    )
        _FETCHED.add(os.path.realpath(path))
    except WeightsFetchError:  # the transfer cut short, named above
        raise
    except urllib.error.HTTPError as e:
        raise WeightsFetchError(f"Cannot fetch {url}: HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:
        raise WeightsFetchError(f"Cannot fetch {url}: {e.reason}") from None
    except (OSError, ValueError) as e:
        raise WeightsFetchError(f"Cannot fetch {url}: {type(e).__name__}: {e}") from None


def local_weights_file(path: str) -> str:
    """The local file of ``MODEL.WEIGHTS``: a local path as it is; ``file://`` its path;
    ``detectron2://``, ``https://``, ``http://`` fetched into the cache (``url_cache_path``;
    a file already cached is read without network).  The file is then read like any local one
    (``aamn.modeling.checkpoint.read_weights_file``: plain data only).

    Raises:
        WeightsFetchError: the URL cannot be fetched, or would be cached outside the cache,
            naming it (and the cache path where the file can be placed by hand).
    """
    path = str(path)
    if path.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(path).path)
    if not is_weights_url(path):
        return path
    local = url_cache_path(path)  # checked before anything is fetched or written
    if os.path.isfile(local):
        return local
    try:
        fetch_url(path, local)
    except WeightsFetchError as e:
        raise WeightsFetchError(
            f"{e}.  Without network, place the file at {local} (the cache of fetched weights, "
            "$FVCORE_CACHE) and run again"
        ) from None
    return local


class WeightsFetchError(IOError):
    """A weights URL that cannot be fetched."""


def load_plain_pth(path: str):
    """``torch.load(path, weights_only=True)`` on the CPU (tensors and plain data only: no code
    runs), memory-mapped when the file is in torch's zip format; a file in the legacy format
    (``_use_new_zipfile_serialization=False``, torch < 1.6) cannot be memory-mapped and is read
    whole."""
    import zipfile

    import torch

    return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))


def expand_inputs(patterns, option: str = "--input"):
    """The files and folders of ``patterns`` (paths or globs, in order; a glob's matches sorted),
    each once.  Raises ``ValueError`` naming ``option`` and a pattern that matches nothing."""
    import glob

    out = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not matches or not all(os.path.exists(m) for m in matches):
            raise ValueError(f"{option} {pattern!r} matches no file or folder")
        out += [m for m in matches if m not in out]
    return out


def positive_int(text: str) -> int:
    """An ``argparse`` type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@contextmanager
def atomic_path(path, suffix=""):
    """Yield a temporary path next to ``path``; rename it to ``path`` when the block succeeds.

    The folder is created if needed.  On an exception (or a SIGTERM turned into ``SystemExit``)
    the temporary file is removed and ``path`` is untouched (a reader never sees a partial
    file); temporaries of writers that were killed outright are removed by the next write to
    ``path``.  The file gets the mode a plain ``open`` would give (0666 less the umask).
    ``suffix`` is kept at the end of the temporary name (OpenCV picks the container from it).
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = temporary_path(folder, "." + os.path.basename(path) + ".tmp-", suffix)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 & ~_umask())
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


def read_json_file(path, what: str):
    """The content of the JSON file ``path`` (``what`` names it in the errors: "expressions
    file").

    Raises:
        FileNotFoundError: ``<what> not found: <path>``.
        ValueError: ``<path>: not JSON (...)`` (or not UTF-8 text).
    """
    import json

    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not JSON ({e})") from None


def write_json_atomic(path, obj) -> None:
    """``obj`` as JSON (indent 2) at ``path``, written to a temporary and renamed into place
    (``atomic_path``): a reader never sees a partial file."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        json.dump(obj, f, indent=2)
