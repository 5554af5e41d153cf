"""Optical flow: quantisation, OpenCV flow of a moving square, the cache,
datasets/prepare_flow.py."""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest

from aamn.data.flow import (
    compute_flow,
    dequantize_flow,
    is_flow_complete,
    quantize_flow,
    read_flow,
    write_video_flow,
)
from aamn.data.video import video_info
from fixtures import load_script, write_a2d_tree, write_jhmdb_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_prepare_flow():
    return load_script("datasets/prepare_flow.py", register=True)


def test_quantisation_roundtrip_and_clipping():
    B = 20.0
    flow = np.array([[[3.0, -1.0], [0.0, 0.0], [25.0, -30.0], [-19.9, 19.9]]], np.float32)
    q = quantize_flow(flow, B)
    assert q.dtype == np.uint8 and q.shape == (1, 4, 3)
    assert q[0, 1].tolist() == [128, 128, 0]
    assert q[0, 2].tolist() == [255, 0, 255]  # clipped at +-B (magnitude at B * sqrt 2)
    d = dequantize_flow(q, B)
    np.testing.assert_allclose(d[0, [0, 1, 3], :2], flow[0, [0, 1, 3]], atol=B / 127 / 2 + 1e-6)
    np.testing.assert_allclose(d[0, 0, 2], np.hypot(3, 1), atol=B * np.sqrt(2) / 255)
    np.testing.assert_allclose(d[0, 2, :2], [B * 127 / 127, -B * 128 / 127], atol=1e-5)


@pytest.mark.parametrize("method", ["dis", "dis_fast", "dis_ultrafast", "farneback"])
def test_opencv_flow_of_a_moving_square(method):
    h, w, t = 48, 64, 4
    frames = np.zeros((t, h, w, 3), np.uint8)
    rng = np.random.RandomState(0)
    texture = rng.randint(60, 255, (14, 14, 3)).astype(np.uint8)
    for i in range(t):
        x, y = 10 + 2 * i, 12 + 1 * i
        frames[i, y : y + 14, x : x + 14] = texture
    flow = compute_flow(frames, method=method)
    assert flow.shape == (t, h, w, 2) and flow.dtype == np.float32
    inner = flow[0, 16:22, 14:20]  # the middle of the square in frame 1
    np.testing.assert_allclose(inner.reshape(-1, 2).mean(0), [2.0, 1.0], atol=0.5)
    np.testing.assert_array_equal(flow[-1], flow[-2])  # the last frame repeats the previous flow
    assert not compute_flow(frames[:1]).any()


def test_cache_write_read_and_completeness(tmp_path):
    flow = np.random.RandomState(0).uniform(-5, 5, (3, 6, 8, 2)).astype(np.float32)
    folder = str(tmp_path / "flow" / "vid")
    write_video_flow(folder, flow, bound=20.0)
    assert sorted(os.listdir(folder)) == ["00001.png", "00002.png", "00003.png", "flow.json"]
    assert os.listdir(tmp_path / "flow") == ["vid"]  # no temporary folder left
    assert is_flow_complete(folder, num_frames=3, bound=20.0)
    assert not is_flow_complete(folder, num_frames=4)
    assert not is_flow_complete(folder, bound=10.0)
    out = read_flow(folder, [3, 1, 1], 20.0)
    assert out.shape == (3, 6, 8, 3)
    np.testing.assert_allclose(out[0, ..., :2], flow[2], atol=20.0 / 127 / 2 + 1e-6)
    np.testing.assert_array_equal(out[1], out[2])
    # the stored PNG channel 0 is x (cv2.imwrite order)
    import cv2

    raw = cv2.imread(os.path.join(folder, "00001.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(raw, quantize_flow(flow[0], 20.0))
    os.remove(os.path.join(folder, "00002.png"))
    assert not is_flow_complete(folder)
    with pytest.raises(FileNotFoundError, match=r"00002\.png.*prepare_flow\.py"):
        read_flow(folder, [2], 20.0)
    with pytest.raises(FileExistsError):
        write_video_flow(folder, flow, bound=20.0, overwrite=False)


def test_flow_cache_of_another_method_is_refused(tmp_path):
    """INPUT.FLOW.METHOD is checked against the cache's flow.json: a model trained on one DIS
    preset never reads another's flow silently."""
    flow = np.zeros((2, 6, 8, 2), np.float32)
    folder = str(tmp_path / "flow" / "vid")
    write_video_flow(folder, flow, bound=20.0, method="dis_fast")
    assert read_flow(folder, [1], 20.0, method="dis_fast").shape == (1, 6, 8, 3)
    assert read_flow(folder, [1], 20.0).shape == (1, 6, 8, 3)  # not checked
    with pytest.raises(ValueError, match=r"computed with 'dis_fast'.*INPUT\.FLOW\.METHOD 'dis'"):
        read_flow(folder, [1], 20.0, method="dis")


def test_prepare_flow_a2d_resumable_and_sharded(tmp_path, capsys):
    pf = load_prepare_flow()
    root = str(tmp_path / "a2d")
    write_a2d_tree(root)
    flow_root = os.path.join(root, "flow")

    # shard 1/2 then 0/2 cover the videos without overlap
    assert pf.main(["--dataset-root", root, "--shard", "1/2"]) == 0
    first = sorted(os.listdir(flow_root))
    assert first == ["vidB"]  # sorted (vidA, vidB, vidC); vidM is a missed video
    assert not os.path.exists(os.path.join(flow_root, ".complete"))
    # an interrupted run's temporary folder is ignored
    os.makedirs(os.path.join(flow_root, ".vidA.tmp-dead"))
    assert pf.main(["--dataset-root", root, "--shard", "0/2", "--workers", "2"]) == 0
    assert sorted(v for v in os.listdir(flow_root) if not v.startswith(".")) == [
        "vidA",
        "vidB",
        "vidC",
    ]
    assert os.path.exists(os.path.join(flow_root, ".complete"))
    for vid in ("vidA", "vidB", "vidC"):
        n = video_info(os.path.join(root, "Release", "clips320H", vid + ".mp4"))[0]
        assert is_flow_complete(os.path.join(flow_root, vid), num_frames=n, bound=20.0)
        meta = json.load(open(os.path.join(flow_root, vid, "flow.json")))
        assert (meta["height"], meta["width"], meta["bound"]) == (48, 64, 20.0)

    # resumable: a complete video is skipped, an incomplete one redone
    mtime = os.path.getmtime(os.path.join(flow_root, "vidA", "00001.png"))
    os.remove(os.path.join(flow_root, "vidC", "00003.png"))
    capsys.readouterr()
    assert pf.main(["--dataset-root", root, "--layout", "a2d"]) == 0
    assert os.path.getmtime(os.path.join(flow_root, "vidA", "00001.png")) == mtime
    assert os.path.exists(os.path.join(flow_root, "vidC", "00003.png"))
    os.utime(os.path.join(flow_root, "vidA", "00001.png"), (0, 0))
    assert pf.main(["--dataset-root", root, "--overwrite"]) == 0
    assert os.path.getmtime(os.path.join(flow_root, "vidA", "00001.png")) > 0


def test_prepare_flow_jhmdb_autodetected_and_failures_reported(tmp_path):
    pf = load_prepare_flow()
    root = str(tmp_path / "jhmdb")
    write_jhmdb_tree(root)
    assert pf.detect_layout(root) == "jhmdb"
    assert pf.main(["--dataset-root", root]) == 0
    assert is_flow_complete(os.path.join(root, "flow", "jumper_2"), num_frames=12)
    # a missing A2D video is reported and the exit status says so
    a2d = str(tmp_path / "a2d")
    write_a2d_tree(a2d)
    os.remove(os.path.join(a2d, "Release", "clips320H", "vidC.mp4"))
    assert pf.main(["--dataset-root", a2d]) == 1
    assert not os.path.exists(os.path.join(a2d, "flow", ".complete"))
    with pytest.raises(SystemExit):
        pf.main(["--dataset-root", a2d, "--shard", "2/2"])


def test_prepare_flow_asks_a_registered_data_set_for_its_videos(tmp_path):
    """``--dataset NAME``: the root and layout of the registration; the videos its layout lists
    (``aamn.data.datasets.common.VIDEO_LAYOUTS``), so a new layout needs no edit of the script."""
    import uuid

    from aamn.data.datasets import register_jhmdb_sentences
    from aamn.data.datasets.common import VIDEO_LAYOUTS, register_video_layout

    pf = load_prepare_flow()
    root = str(tmp_path / "jhmdb")
    write_jhmdb_tree(root)
    name = f"flow_jhmdb_{uuid.uuid4().hex[:8]}"
    register_jhmdb_sentences(name, root)
    assert pf.main(["--dataset", name]) == 0
    assert is_flow_complete(os.path.join(root, "flow", "jumper_2"), num_frames=12)
    with pytest.raises(SystemExit, match="did you mean"):
        pf.main(["--dataset", name + "x"])
    # a layout registered from elsewhere: its own lister decides the videos
    other = tmp_path / "other"
    (other / "Clips").mkdir(parents=True)
    lister = lambda r: [("jumper_2", os.path.join(root, "Rename_Images", "jump", "jumper_2"))]  # noqa: E731
    register_video_layout("other", "Clips", lister)
    try:
        assert pf.main(["--dataset-root", str(other)]) == 0
        assert is_flow_complete(str(other / "flow" / "jumper_2"), num_frames=12)
    finally:
        VIDEO_LAYOUTS.pop("other")
