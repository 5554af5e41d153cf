"""aamn.data.frame_cache: the per-process LRU of decoded frames, and the readers that use it."""

import os

import numpy as np
import pytest

from aamn.config import get_aamn_cfg
from aamn.data.dataset_mappers import build_dataset_mapper
from aamn.data.flow import read_flow, write_video_flow
from aamn.data.frame_cache import FrameCache, frame_cache
from aamn.data.layout_writers import write_video_mp4
from aamn.data.video import VideoReader

from fixtures import frame_number_of, pattern_frames


@pytest.fixture
def cache_on():
    """The process's cache at 64 MB, emptied; restored afterwards."""
    before = frame_cache.max_bytes
    frame_cache.clear()
    frame_cache.resize(64 << 20)
    yield frame_cache
    frame_cache.clear()
    frame_cache.resize(before)


def test_lru_by_bytes():
    cache = FrameCache(max_bytes=3000)
    a, b, c = (np.full(1000, i, np.uint8) for i in range(3))
    for key, value in (("a", a), ("b", b), ("c", c)):
        cache.put(key, value)
    assert len(cache) == 3 and cache.nbytes == 3000
    assert cache.get("a")[0] == 0  # "a" is now the most recently used
    cache.put("d", np.full(1000, 3, np.uint8))  # evicts "b", the least recently used
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None
    assert (cache.hits, cache.misses) == (3, 1)
    kept = cache.get("a")
    with pytest.raises(ValueError):
        kept[0] = 9  # read-only
    a[0] = 7  # the cache holds a copy
    assert cache.get("a")[0] == 0
    cache.put("big", np.zeros(3001, np.uint8))  # larger than the budget: not kept
    assert cache.get("big") is None and cache.nbytes == 3000
    cache.resize(1000)
    assert len(cache) == 1 and cache.nbytes == 1000
    cache.resize(0)
    cache.put("e", np.zeros(1, np.uint8))
    assert len(cache) == 0


def test_video_frames_come_from_the_cache_and_a_rewritten_video_is_read_again(
    tmp_path, cache_on, monkeypatch
):
    path = str(tmp_path / "v.mp4")
    write_video_mp4(path, pattern_frames(20, 48, 64))
    first = VideoReader(path).read([3, 4, 12])
    assert [frame_number_of(f) + 1 for f in first] == [3, 4, 12]
    assert len(cache_on) == 3

    def no_decoding(self, needed):
        raise AssertionError(f"decoded {needed} again")

    with monkeypatch.context() as m:
        m.setattr(VideoReader, "_read_mp4", no_decoding)
        np.testing.assert_array_equal(VideoReader(path).read([12, 3, 4]), first[[2, 0, 1]])
    # Another video at the same path (a new modification time and size): decoded again.
    frames = pattern_frames(20, 48, 64)[::-1].copy()
    write_video_mp4(path, frames)
    os.utime(path, ns=(1, 1))
    assert [frame_number_of(f) + 1 for f in VideoReader(path).read([3])] == [18]


def test_cache_off_reads_the_same_frames(tmp_path, cache_on):
    path = str(tmp_path / "v.mp4")
    write_video_mp4(path, pattern_frames(12, 48, 64))
    cached = VideoReader(path).read([2, 9, 2], format="BGR")
    frame_cache.resize(0)
    np.testing.assert_array_equal(VideoReader(path).read([2, 9, 2], format="BGR"), cached)
    assert len(frame_cache) == 0


def test_flow_frames_cached_until_the_folder_is_rewritten(tmp_path, cache_on):
    folder = str(tmp_path / "flow" / "vid")
    flow = np.zeros((4, 8, 8, 2), np.float32)
    write_video_flow(folder, flow + 1.0, bound=20.0)
    assert np.allclose(read_flow(folder, [2, 3], 20.0)[..., 0], 1.0, atol=0.2)
    assert len(cache_on) == 2
    hits = cache_on.hits
    read_flow(folder, [3], 20.0)
    assert cache_on.hits == hits + 1
    write_video_flow(folder, flow - 5.0, bound=20.0)
    os.utime(os.path.join(folder, "flow.json"), ns=(1, 1))
    assert np.allclose(read_flow(folder, [2, 3], 20.0)[..., 0], -5.0, atol=0.2)


def test_the_data_loaders_size_the_cache(cache_on):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if "frame_cache_probe" not in DatasetCatalog.list():
        DatasetCatalog.register("frame_cache_probe", lambda: [])
        MetadataCatalog.get("frame_cache_probe").set(evaluator_type="coco")
    cfg = get_aamn_cfg("configs/synthetic/detector.yaml", ["DATALOADER.FRAME_CACHE_MB", "3"])
    build_dataset_mapper(cfg, ["frame_cache_probe"], is_train=True)
    assert frame_cache.max_bytes == 3 << 20
