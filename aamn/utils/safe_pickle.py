"""Reading pickles from elsewhere without running their code.

A pickle names functions that the reader calls (``os.system`` as easily as ``numpy.ndarray``), so
``pickle.load`` of a file one did not write runs whatever the file says.  The pickles this project
reads hold only plain data:

* model-zoo ``.pkl`` weights (detectron2, Detectron / Caffe2, pycls): dicts of names and numpy
  arrays;
* proposal files (``aamn.data.proposals``, detectron2's format): lists of ids and numpy arrays,
  and detectron2's ``BoxMode``;
* the data sets' index cache: lists and dicts of strings and numbers.

``safe_load`` admits exactly those types (``ALLOWED_GLOBALS``) and refuses any other global with an
``UnsafePickleError`` naming the file and the global, before anything is called.  ``.pth`` files
are read with ``torch.load(weights_only=True)``, torch's own restricted unpickler
(``aamn.modeling.checkpoint``).
"""

import os
import pickle

__all__ = ["ALLOWED_GLOBALS", "UnsafePickleError", "safe_load"]

# (module, name) pairs a plain-data pickle may name.  numpy moved its internals from numpy.core to
# numpy._core in 2.0; files written by either are accepted.
ALLOWED_GLOBALS = frozenset(
    [
        ("collections", "OrderedDict"),
        # Python-2 pickles (Caffe2 model zoo) and protocol-2 pickles encode bytes through it.
        ("_codecs", "encode"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("__builtin__", "set"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("detectron2.structures.boxes", "BoxMode"),
    ]
    + [
        (f"numpy.{core}.{module}", name)
        for core in ("core", "_core")
        for module, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        )
    ]
)


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle names a function or class outside ``ALLOWED_GLOBALS`` (nothing was called)."""


class _PlainDataUnpickler(pickle.Unpickler):
    def __init__(self, file, path, what):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._what = what

    def find_class(self, module, name):
        if (module, name) not in ALLOWED_GLOBALS:
            raise UnsafePickleError(
                f"Refusing to load {self._path}: it asks to call {module}.{name}, and a "
                f"{self._what} holds only names, numbers and numpy arrays.  Nothing was run; "
                "the file is either not what it claims to be or was crafted to run code"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid):
        raise UnsafePickleError(f"Refusing to load {self._path}: it holds persistent objects")


def safe_load(path, what="pickle of plain data"):
    """Unpickle ``path`` admitting only plain data (``ALLOWED_GLOBALS``).

    Args:
        path: the file.
        what: what the file should be, for messages ("model-zoo weights file").

    Raises:
        FileNotFoundError: no such file.
        UnsafePickleError: the pickle names any other function or class (nothing is called).
        ValueError: the file is not a readable pickle (truncated, another format), naming it.
    """
    path = os.fspath(path)
    with open(path, "rb") as f:
        try:
            return _PlainDataUnpickler(f, path, what).load()
        except UnsafePickleError:
            raise
        except Exception as e:  # EOFError, UnpicklingError, ... of a truncated / foreign file
            raise ValueError(
                f"Cannot read {path} as a {what}: {type(e).__name__}: {e} "
                "(truncated, or not a pickle)"
            ) from e
