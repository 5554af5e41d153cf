"""Decoded frames kept in memory: a per-process LRU bounded in bytes.

A training set's clips are read again every epoch, and reading a frame of an mp4 costs opening
the file, seeking to the key frame before it and decoding forward (most of the data loading time
on the synthetic benchmark: BENCHMARKS.md); a flow frame costs a PNG decode.  ``VideoReader`` (mp4
frames) and ``read_flow`` (flow frames) keep what they decode here, keyed by the file's path,
modification time and size (the flow cache's ``flow.json``), so a file rewritten in place is read
again.  Only frames that really decoded are kept, as read-only arrays; callers get copies.

The cache is off (0 bytes) until something sizes it: the data loaders do, from
``DATALOADER.FRAME_CACHE_MB`` (``build_dataset_mapper``).  Each process has its own: a forked
data-loader worker starts with its parent's frames and fills its own from there.
"""

import os
import threading
from collections import OrderedDict

__all__ = ["FrameCache", "frame_cache"]


class FrameCache:
    """An LRU of numpy arrays with a byte budget.

    Attributes:
        max_bytes (int): the budget; 0 keeps nothing.
        nbytes (int): bytes held now.
        hits, misses (int): lookups answered and not, since the last ``clear``.
    """

    def __init__(self, max_bytes=0):
        self._items = OrderedDict()
        self._lock = threading.Lock()
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0

    def __len__(self):
        return len(self._items)

    def resize(self, max_bytes):
        """Set the budget (bytes), dropping the least recently used frames beyond it."""
        with self._lock:
            self.max_bytes = max(int(max_bytes), 0)
            self._evict()

    def clear(self):
        with self._lock:
            self._items.clear()
            self.nbytes = 0
            self.hits = self.misses = 0

    def get(self, key):
        """The array stored under ``key`` (read-only), or None."""
        with self._lock:
            value = self._items.get(key)
            if value is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key, array):
        """Keep a copy of ``array`` under ``key`` (nothing when the budget is 0 or too small)."""
        if array.nbytes > self.max_bytes:
            return
        value = array.copy()
        value.setflags(write=False)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.nbytes -= old.nbytes
            self._items[key] = value
            self.nbytes += value.nbytes
            self._evict()

    def _evict(self):
        while self.nbytes > self.max_bytes and self._items:
            _, old = self._items.popitem(last=False)
            self.nbytes -= old.nbytes

    def _after_fork(self):
        self._lock = threading.Lock()


frame_cache = FrameCache()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=frame_cache._after_fork)
