"""Inference on a user's video: ``VideoStream``, ``VideoPredictor`` (whole videos, several queries,
clip-boundary linking, bounded memory), ``tools/demo.py`` on a real camera video for each of the
three models, the tube drawings and the training curves."""

import json
import logging
import os

import cv2
import numpy as np
import pytest
import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.modeling import build_model

from aamn.config import get_aamn_cfg
from aamn.data.proposals import proposal_id, save_proposals
from aamn.data.video import VideoStream
from aamn.engine import ProposalDetector, QueryError, VideoPredictor
from aamn.engine.predictor import result_record
from aamn.modeling import StreamCheckpointer
from aamn.utils.training_plots import plot_training_curves, read_metrics
from aamn.utils.visualizer import draw_tube_panel, draw_video_frame

from fixtures import real_video_path
from modeling_helpers import (  # noqa: F401
    baseline_opts,
    seed_all,
    single_thread,
    tiny_cfg,
    vocab_file,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_FRAMES, H, W, FPS = 23, 48, 64, 12.5  # 23 frames: not a multiple of the clip length 3


def _square_frames(n=N_FRAMES, h=H, w=W):
    """A bright square moving right, a second one moving down, on a dark textured background."""
    g = np.random.default_rng(0)
    frames = (g.random((n, h, w, 3)) * 40).astype(np.uint8)
    for t in range(n):
        x = 4 + t
        frames[t, 10:26, x : x + 14] = (230, 60, 60)
        y = 2 + t // 2
        frames[t, y : y + 10, 44:56] = (60, 60, 230)
    return frames


def _write_mp4(path, frames, fps=FPS):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, frames.shape[2:0:-1])
    for f in frames:
        writer.write(np.ascontiguousarray(f[..., ::-1]))
    writer.release()
    return str(path)


def _baseline_opts(arch):
    return baseline_opts(arch) + ["INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "64"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, vocab_file):  # noqa: F811
    """Tiny untrained checkpoints (with their vocabulary) of the three models and a detector:
    ``{name: (config path, weights path)}``."""
    root = tmp_path_factory.mktemp("checkpoints")
    cfgs = {
        "AAMN": tiny_cfg(
            vocab_file,
            **{"INPUT.MIN_SIZE_TEST": 48, "INPUT.MAX_SIZE_TEST": 64, "MODEL.AAMN.TUBE_DIM": 32},
        ),
        "DynamicFilterSeg": get_aamn_cfg(opts=_baseline_opts("DynamicFilterSeg")),
        "CMDy": get_aamn_cfg(opts=_baseline_opts("CMDy")),
    }
    for arch in ("DynamicFilterSeg", "CMDy"):
        cfgs[arch].defrost()
        cfgs[arch].MODEL.LANGUAGE.VOCAB_FILE = vocab_file
    det_cfg = get_aamn_cfg(
        os.path.join(REPO, "configs", "synthetic", "detector.yaml"),
        ["INPUT.MIN_SIZE_TEST", "48", "INPUT.MAX_SIZE_TEST", "64"],
    )
    out = {}
    for name, cfg in {**cfgs, "detector": det_cfg}.items():
        seed_all(3)
        model = build_model(cfg)
        folder = root / name
        folder.mkdir()
        cfg = cfg.clone()
        cfg.defrost()
        cfg.MODEL.WEIGHTS = str(folder / "model.pth")
        cfg.MODEL.LANGUAGE.VOCAB_FILE = ""  # the checkpoint carries it
        checkpointer = (DetectionCheckpointer if name == "detector" else StreamCheckpointer)(
            model, str(folder)
        )
        checkpointer.save("model")
        with open(folder / "config.yaml", "w") as f:
            f.write(cfg.dump())
        out[name] = (str(folder / "config.yaml"), cfg.MODEL.WEIGHTS)
    return out


def _cfg(checkpoints, name, *opts):
    path, weights = checkpoints[name]
    return get_aamn_cfg(path, ["MODEL.WEIGHTS", weights, *opts])


def _detector(checkpoints):
    return ProposalDetector(_cfg(checkpoints, "detector"))


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    frames = _square_frames()
    return _write_mp4(tmp_path_factory.mktemp("video") / "squares.mp4", frames), frames


# ---------------------------------------------------------------------- VideoStream
def test_video_stream_reads_files_folders_and_arrays(tmp_path, video):
    path, frames = video
    s = VideoStream(path)
    assert (s.height, s.width, s.num_frames, s.name) == (H, W, N_FRAMES, "squares")
    assert s.fps == pytest.approx(FPS)
    decoded = list(s)
    assert len(decoded) == N_FRAMES == s.frames_read and decoded[0].shape == (H, W, 3)
    # mp4 is lossy: the red square of frame 6 (0-based 5) is where it was drawn
    np.testing.assert_allclose(decoded[5][12:24, 11:21].mean((0, 1)), (230, 60, 60), atol=25)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (1, 2, 10):  # natural order: frame2 before frame10
        cv2.imwrite(str(folder / f"frame{i}.png"), np.full((H, W, 3), i, np.uint8))
    assert [int(f[0, 0, 0]) for f in VideoStream(str(folder))] == [1, 2, 10]
    assert len(list(VideoStream(frames[:4], fps=10))) == 4


def test_video_stream_errors_name_the_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.mp4"):
        VideoStream(str(tmp_path / "nothing.mp4"))
    bad = tmp_path / "not_a_video.mp4"
    bad.write_text("hello")
    with pytest.raises(IOError, match="not_a_video.mp4"):
        VideoStream(str(bad))
    (tmp_path / "empty").mkdir()
    with pytest.raises(IOError, match="no image frames"):
        VideoStream(str(tmp_path / "empty"))
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "00001.png").write_bytes(b"not a png")
    with pytest.raises(IOError, match="Cannot read the frame image .*00001.png"):
        VideoStream(str(corrupt))
    from aamn.data.video import VideoReader

    with pytest.raises(IOError, match="Cannot read the frame image .*00001.png"):
        VideoReader(str(corrupt))
    with pytest.raises(ValueError, match="uint8"):
        VideoStream(np.zeros((2, 8, 8, 3), np.float32))
    mixed = [np.zeros((8, 8, 3), np.uint8), np.zeros((9, 8, 3), np.uint8)]
    with pytest.raises(IOError, match="Frame 2"):
        list(VideoStream(mixed))


# ---------------------------------------------------------------------- VideoPredictor
def test_aamn_segments_every_frame_clip_by_clip(checkpoints, video):
    path, _ = video
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    calls = []
    forward = predictor.model.forward
    predictor.model.forward = lambda batch: calls.append(batch) or forward(batch)
    queries = ["a man is running", "red dog jumping"]
    out = predictor.predict(path, queries)
    assert [f["index"] for f in out] == list(range(N_FRAMES))
    T, clips = 3, -(-N_FRAMES // 3)
    # TEST.VIDEO.BATCH_SIZE (4) clips of 2L+1 frames per pass, each with every query
    assert [len(b) for b in calls] == [4 * len(queries)] * (clips // 4) + [
        clips % 4 * len(queries)
    ] * bool(clips % 4)
    for f in out:
        assert [r["query"] for r in f["queries"]] == queries
        for r in f["queries"]:
            assert r["mask"].shape == (H, W) and r["mask"].dtype == bool
            assert r["box"].shape == (4,) and 0 < r["score"] < 1
            assert r["clip"] == f["index"] // T
            assert r["all_tube_boxes"].shape == (4, T, 4)
            t = f["index"] - r["clip"] * T
            np.testing.assert_allclose(r["box"], r["tube_boxes"][t], atol=1e-4)
            assert set(r["word_attention"]) == {"actor", "action"}
    # the last clip (frames 21, 22) repeats the last frame
    assert out[-1]["queries"][0]["clip_frames"] == [21, 22, 22]


def test_the_union_of_tubes_through_the_predictor(checkpoints, video):
    """With MODEL.AAMN.TUBE_UNION_MARGIN the predictor's masks contain the one-tube masks (every
    tube within the margin united: here all of them), its boxes theirs, and it names the tubes."""
    path, _ = video
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    one = predictor.predict(path, ["a man is running"])
    predictor.model.tube_union_margin = 1e6
    union = predictor.predict(path, ["a man is running"])
    for a, b in zip(one, union):
        ra, rb = a["queries"][0], b["queries"][0]
        assert (rb["mask"] >= ra["mask"]).all()
        assert (rb["box"][:2] <= ra["box"][:2] + 1e-4).all()
        assert (rb["box"][2:] >= ra["box"][2:] - 1e-4).all()
        assert len(rb["united_tubes"]) == len(rb["tube_scores"]) >= 2
        assert ra["united_tubes"] == [ra["tube_index"]] and "united_tubes" not in result_record(ra)
        assert result_record(rb)["united_tubes"] == rb["united_tubes"]


def test_clips_batched_give_what_clips_one_at_a_time_give(checkpoints, video):
    """Several clips per pass (TEST.VIDEO.BATCH_SIZE) compute what one clip per pass does."""
    path, _ = video
    queries = ["a man is running", "red dog jumping"]
    out, detected = {}, {1: [], 3: []}
    for n in (1, 3):
        detector = _detector(checkpoints)

        def counted(frames, detector=detector, seen=detected[n]):
            seen.append(len(frames))
            return detector(frames)

        predictor = VideoPredictor(
            _cfg(checkpoints, "AAMN", "TEST.VIDEO.BATCH_SIZE", str(n)), detector=counted
        )
        out[n] = predictor.predict(path, queries)
    # the detector sees the frames of a pass at once (the video's 23 frames: 8 clips, the last
    # one of frames 21, 22)
    assert detected[1] == [3] * 7 + [2] and detected[3] == [9, 9, 5]
    assert len(out[1]) == len(out[3]) == N_FRAMES
    for a, b in zip(out[1], out[3]):
        assert a["index"] == b["index"]
        for qa, qb in zip(a["queries"], b["queries"]):
            assert qa["clip"] == qb["clip"] and qa["tube_index"] == qb["tube_index"]
            np.testing.assert_array_equal(qa["mask"], qb["mask"])
            np.testing.assert_allclose(qa["tube_scores"], qb["tube_scores"], atol=1e-5)


def test_clip_boundary_linking_passes_the_previous_tube(checkpoints, video):
    """Each clip after the first gets, per query, the box of the tube selected in the previous
    clip's last frame; AAMN's ``select_tubes`` (tested in test_aamn_meta_arch) links to it."""
    path, _ = video
    linked = _cfg(checkpoints, "AAMN", "TEST.VIDEO.LINK_WEIGHT", "0.05")
    predictor = VideoPredictor(linked, detector=_detector(checkpoints))
    assert predictor.model.link_weight == 0.05
    seen = []
    forward = predictor.model.forward

    def spy(batch):
        outputs = forward(batch)
        seen.append(([x.get("previous_box") for x in batch], outputs))
        return outputs

    predictor.model.forward = spy
    predictor.predict(path, ["a man is running", "red dog jumping"])
    assert len(seen) == -(-N_FRAMES // 3)  # linked: one clip per pass (it needs the previous)
    assert all(p is None for p in seen[0][0])
    for (_, before), (previous, _) in zip(seen, seen[1:]):
        for q in range(2):
            assert torch.equal(previous[q], before[q]["tube_boxes"][-1])
    # LINK_WEIGHT 0 gives the independent selection: the model is called without a link weight
    free = VideoPredictor(
        _cfg(checkpoints, "AAMN", "TEST.VIDEO.LINK_WEIGHT", "0.0"), detector=_detector(checkpoints)
    )
    assert free.model.link_weight == 0.0


def test_queries_do_not_change_each_others_results(checkpoints, video):
    path, _ = video
    for name in ("AAMN", "DynamicFilterSeg"):
        predictor = VideoPredictor(
            _cfg(checkpoints, name),
            detector=_detector(checkpoints) if name == "AAMN" else None,
        )
        both = predictor.predict(path, ["a man is running", "red dog jumping"])
        alone = predictor.predict(path, ["red dog jumping"])
        for a, b in zip(both, alone):
            np.testing.assert_array_equal(a["queries"][1]["mask"], b["queries"][0]["mask"])
            assert a["queries"][1]["score"] == pytest.approx(b["queries"][0]["score"], abs=1e-5)


@pytest.mark.parametrize("name", ["DynamicFilterSeg", "CMDy"])
def test_key_frame_models_step_one_frame_at_a_time(checkpoints, video, name):
    path, frames = video
    predictor = VideoPredictor(_cfg(checkpoints, name, "TEST.VIDEO.BATCH_SIZE", "4"))
    keys = []
    forward = predictor.model.forward
    predictor.model.forward = lambda batch: keys.append(len(batch)) or forward(batch)
    out = predictor.predict(path, ["a man is running"])
    assert [f["index"] for f in out] == list(range(N_FRAMES))
    assert sum(keys) == N_FRAMES and max(keys) == 4
    # Frame 0 is the key frame of the clip (0, 0, 1): the model sees the same input as a clip
    # built by hand, and gives the same mask.
    mapper = predictor.mapper
    decoded = np.stack(list(VideoStream(path)))
    clip = decoded[[0, 0, 1]][..., ::-1] if mapper.image_format == "BGR" else decoded[[0, 0, 1]]
    flow = None
    if mapper.use_flow:  # frame t's flow goes to frame t + 1 (the flow cache's rule)
        f0, f1 = (
            predictor.cache_flow(decoded[0], decoded[1]),
            predictor.cache_flow(decoded[1], decoded[2]),
        )
        flow = np.stack([f0, f0, f1])
    x, _ = mapper.augment_clip(np.ascontiguousarray(clip), flow)
    x.update(mapper.query_input("a man is running"), height=H, width=W)
    with torch.no_grad():
        expected = predictor.model([x])[0]["instances"].pred_masks[0].numpy()
    np.testing.assert_array_equal(out[0]["queries"][0]["mask"], expected)


def test_frames_are_decoded_as_the_clips_need_them(checkpoints, video):
    """Memory bounded by the clip: when frame i is returned, at most one clip and one frame
    beyond it have been decoded."""
    path, _ = video
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    stream = VideoStream(path)
    for item in predictor(stream, ["a man is running"]):  # TEST.VIDEO.BATCH_SIZE clips ahead
        assert stream.frames_read <= (item["index"] // 12 + 1) * 12 + 1
    predictor = VideoPredictor(_cfg(checkpoints, "CMDy", "TEST.VIDEO.BATCH_SIZE", "2"))
    stream = VideoStream(path)
    for item in predictor(stream, ["a man is running"]):
        assert stream.frames_read <= item["index"] + 2 + 1 + 1  # batch, L, flow look-ahead


@pytest.mark.parametrize("n", [1, 2, 22])
def test_videos_of_any_length(checkpoints, n):
    """1 frame (zero flow), 2 frames, and a last clip made of the last frame alone (its flow is
    the previous frame's, kept from the clip before)."""
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    out = predictor.predict(_square_frames(n), ["a man is running"])
    assert [f["index"] for f in out] == list(range(n))
    assert out[-1]["queries"][0]["clip"] == (n - 1) // 3


def test_flow_on_the_fly_equals_the_flow_cache(checkpoints, tmp_path):
    """The predictor's flow is what a model trained on the flow cache reads for the same frames:
    computed by the cache's method, clipped and quantised with INPUT.FLOW.BOUND."""
    from aamn.data.flow import compute_flow, read_flow, write_video_flow

    frames = _square_frames(3)
    cfg = _cfg(checkpoints, "DynamicFilterSeg", "INPUT.FLOW.BOUND", "2.0")
    predictor = VideoPredictor(cfg)
    write_video_flow(str(tmp_path / "v"), compute_flow(frames), bound=2.0)
    cached = read_flow(str(tmp_path / "v"), [1, 2], bound=2.0)
    np.testing.assert_array_equal(predictor.cache_flow(frames[0], frames[1]), cached[0])
    np.testing.assert_array_equal(predictor.cache_flow(frames[1], frames[2]), cached[1])
    assert np.abs(cached[..., :2]).max() <= 2.0 + 1e-6  # clipped at the bound


def test_proposals_from_a_file(checkpoints, video, tmp_path):
    path, _ = video
    boxes = [np.array([[4 + t, 10, 18 + t, 26], [44, 2, 56, 12]], np.float32) for t in range(23)]
    ids = [proposal_id("my_video", t + 1) for t in range(N_FRAMES)]
    pfile = str(tmp_path / "p.pkl")
    save_proposals(pfile, ids, boxes, [np.array([2.0, 1.0], np.float32)] * N_FRAMES)
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), proposal_file=pfile, video_id="my_video")
    out = predictor.predict(path, ["a man is running"])
    for f in out:  # every tube is made of the file's boxes (K = 4: the last one repeated)
        r = f["queries"][0]
        t = f["index"] - r["clip"] * 3
        assert any(np.allclose(r["box"], b, atol=1e-3) for b in boxes[f["index"]])
        assert r["all_tube_boxes"].shape[0] == 4 and t in range(3)
    # checked before the first frame: the file lacks this id (the video's name) altogether
    with pytest.raises(ValueError, match=r"lacks 23 of the 23 frames.*squares/00001.*--video-id"):
        VideoPredictor(_cfg(checkpoints, "AAMN"), proposal_file=pfile).predict(path, ["a man"])
    # or one frame of it
    save_proposals(pfile, ids[:-1], boxes[:-1], [np.array([2.0, 1.0], np.float32)] * 22)
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), proposal_file=pfile, video_id="my_video")
    with pytest.raises(ValueError, match=r"lacks 1 of the 23 frames.*my_video/00023.*every frame"):
        predictor.predict(path, ["a man"])


def test_predictor_errors(checkpoints, video, caplog):
    path, _ = video
    with pytest.raises(ValueError, match="proposal"):
        VideoPredictor(_cfg(checkpoints, "AAMN"))
    with pytest.raises(FileNotFoundError, match="MODEL.WEIGHTS"):
        VideoPredictor(get_aamn_cfg(checkpoints["CMDy"][0], ["MODEL.WEIGHTS", ""]))
    with pytest.raises(FileNotFoundError, match="detector"):
        ProposalDetector(get_aamn_cfg(checkpoints["detector"][0], ["MODEL.WEIGHTS", "no.pth"]))
    predictor = VideoPredictor(_cfg(checkpoints, "DynamicFilterSeg"))
    with pytest.raises(QueryError, match="empty"):
        predictor.query_inputs([" ,. "])
    with pytest.raises(QueryError, match="No word"):
        predictor.query_inputs(["zebra galloping"])
    with caplog.at_level(logging.WARNING, logger="aamn.engine.predictor"):
        predictor.query_inputs(["a man galloping"])
    assert "['galloping']" in caplog.text
    with pytest.raises(QueryError):  # checked before the video is opened
        list(predictor("does-not-exist.mp4", [""]))


# ---------------------------------------------------------------------- tools/demo.py
def _demo(argv):
    import sys

    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import demo
    finally:
        sys.path.pop(0)
    return demo.main(argv)


@pytest.mark.parametrize("name", ["AAMN", "DynamicFilterSeg", "CMDy"])
def test_demo_on_a_real_camera_video(checkpoints, tmp_path, name):
    source = real_video_path()
    out = tmp_path / "out.mp4"
    cfg_path, weights = checkpoints[name]
    argv = ["--config-file", cfg_path, "--video", source, "--output", str(out), "--quiet"]
    argv += ["--query", "a man is running", "--query", "woman walking left"]
    argv += ["--json", str(tmp_path / "out.json")]
    if name == "AAMN":
        det_cfg, det_weights = checkpoints["detector"]
        argv += ["--detector-config", det_cfg, "--detector-weights", det_weights]
    assert _demo(argv + ["MODEL.WEIGHTS", weights]) == 0
    src, dst = cv2.VideoCapture(source), cv2.VideoCapture(str(out))
    n = 0
    while dst.read()[0]:
        n += 1
    assert n == int(src.get(cv2.CAP_PROP_FRAME_COUNT)) == 120  # one output frame per input frame
    # H.264, drawn at 3 x the 176 x 144 input (captions readable: the shorter side >= 360)
    assert int(dst.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little") in (b"avc1", b"h264")
    # x264's "superfast" preset (its settings, which x264 writes into the stream: subme=1)
    assert b" subme=1 " in out.read_bytes().split(b"x264 - core", 1)[1][:1000]
    assert (dst.get(cv2.CAP_PROP_FRAME_WIDTH), dst.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (528, 432)
    assert dst.get(cv2.CAP_PROP_FPS) == pytest.approx(src.get(cv2.CAP_PROP_FPS), abs=0.01)
    with open(tmp_path / "out.json") as f:
        result = json.load(f)
    assert result["model"] == name and len(result["frames"]) == 120
    assert [f["frame"] for f in result["frames"]] == list(range(1, 121))
    assert all(len(f["queries"]) == 2 for f in result["frames"])
    assert result["frames"][0]["queries"][0]["segmentation"]["size"] == [144, 176]


def test_demo_errors_are_clear_and_write_nothing(checkpoints, tmp_path, capsys, video):
    path, _ = video
    out = tmp_path / "out.mp4"
    cfg_path, weights = checkpoints["CMDy"]
    base = ["--config-file", cfg_path, "--output", str(out), "--quiet"]
    cases = [
        (["--video", str(tmp_path / "missing.mp4"), "--query", "a man"], "missing.mp4"),
        (["--video", path, "--query", "   "], "empty"),
        (["--video", path, "--query", "zebra"], "No word"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit) as e:
            _demo(base + argv + ["MODEL.WEIGHTS", weights])
        assert e.value.code == 2 and message in capsys.readouterr().err
    aamn_cfg, aamn_weights = checkpoints["AAMN"]
    with pytest.raises(SystemExit):
        _demo(
            ["--config-file", aamn_cfg, "--output", str(out), "--video", path, "--query", "a man"]
            + ["MODEL.WEIGHTS", aamn_weights]
        )
    assert "--detector-config" in capsys.readouterr().err
    assert not out.exists() and os.listdir(tmp_path) == []


# ---------------------------------------------------------------------- drawings and curves
def test_drawn_frames_keep_the_input_size_and_show_every_query(checkpoints, video):
    path, frames = video
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    item = next(iter(predictor(path, ["a man is running", "red dog jumping"])))
    for r, fill in zip(item["queries"], (True, False)):
        r["mask"][:] = False
        r["mask"][34:46, 36:60] = fill
    drawn = draw_video_frame(item["image"], item["queries"])
    assert drawn.shape == item["image"].shape and drawn.dtype == np.uint8
    changed = np.abs(drawn.astype(int) - item["image"]).sum(-1) > 30
    assert changed[:20, :20].mean() > 0.2  # the caption (the queries) at the top left
    for r in item["queries"]:
        r.pop("word_attention")
    drawn = draw_video_frame(item["image"], item["queries"])  # two caption lines
    changed = np.abs(drawn.astype(int) - item["image"]).sum(-1) > 30
    assert changed[38:43, 40:56].all()  # the first query's mask is painted
    plain = draw_video_frame(item["image"], [])
    np.testing.assert_array_equal(plain, item["image"])  # nothing to draw: the frame itself


def test_demo_frames_are_the_visualizers_picture():
    """``draw_video_frame`` (numpy / OpenCV blending, each text rendered once) draws what
    ``RVOSVisualizer.draw_referred`` + ``draw_caption`` draw through matplotlib: the mask filled
    at alpha 0.45, the box at 0.5, the same captions; the same picture up to anti-aliasing."""
    from aamn.utils.visualizer import QUERY_COLORS, RVOSVisualizer, text_sprite

    g = np.random.default_rng(0)
    image = (g.random((360, 480, 3)) * 255).astype(np.uint8)
    mask = np.zeros((360, 480), bool)
    mask[120:260, 200:330] = True
    box = np.array([190.0, 110.0, 340.0, 270.0], np.float32)
    results = [{"query": "man in black jumping", "score": 0.81, "mask": mask, "box": box}]
    fast = draw_video_frame(image, results)
    vis = RVOSVisualizer(image, overlay=True)
    color = QUERY_COLORS[0]
    vis.draw_referred(mask, box, color, label="1")
    vis.draw_caption([('1 "man in black jumping" 0.81', color)], font_size=10.0)
    slow = vis.get_output().get_image()
    assert fast.shape == slow.shape and fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - slow).mean() < 1.5
    inside = (slice(140, 240), slice(220, 310))  # the mask, away from its outline
    expected = np.clip(image[inside] * 0.55 + np.array(color) * 255 * 0.45 + 0.5, 0, 255)
    assert np.abs(fast[inside].astype(int) - expected.astype(np.uint8)).max() <= 1
    edge = (slice(180, 200), slice(189, 191))  # the box's left side, outside the mask
    expected = np.clip(image[edge] * 0.5 + np.array(color) * 255 * 0.5 + 0.5, 0, 255)
    assert np.abs(fast[edge].astype(int) - expected.astype(np.uint8)).max() <= 1
    sprite = text_sprite('1 "man in black jumping" 0.81', color, 10.0)
    assert text_sprite('1 "man in black jumping" 0.81', color, 10.0) is sprite  # rendered once
    top = (slice(0, 3 + sprite[0].shape[0]), slice(0, 3 + sprite[0].shape[1]))
    assert np.abs(fast[top].astype(int) - slow[top]).mean() < 3  # the caption


def test_the_pages_tubes_picture_is_the_visualizers_picture():
    """``draw_video_tubes`` (OpenCV and cached text sprites) draws each tile as
    ``RVOSVisualizer.draw_tubes`` draws it through matplotlib at the same scale (every tube in its
    colour, the selected one thick), its tags readable and the scores in a legend under AAMN's
    row; a key-frame model's row its mask; each row headed by its query."""
    from aamn.utils.visualizer import TUBE_COLORS, RVOSVisualizer, draw_video_tubes

    g = np.random.default_rng(0)
    frames = [(g.random((96, 128, 3)) * 255).astype(np.uint8) for _ in range(3)]
    boxes = np.array([[[10 + 15 * k, 12 + 3 * k, 50 + 15 * k, 80]] * 3 for k in range(4)], float)
    scores = np.array([0.1, 0.8, 0.05, 0.05])
    mask = np.zeros((96, 128), bool)
    mask[20:50, 30:70] = True
    aamn = {"query": "man in black", "all_tube_boxes": boxes, "tube_index": 1,
            "tube_scores": scores}  # fmt: skip
    frame_model = {"query": "a dog", "mask": mask, "box": np.array([30.0, 20, 70, 50])}
    picture = draw_video_tubes(frames, [[aamn, frame_model]] * 3)
    scale = 2  # display_scale(96, 128, min_side=180)
    # two rows, each under its caption, AAMN's with the legend of its tubes' scores
    assert picture.shape == (2 * (24 + 96 * scale) + 24, 3 * 128 * scale, 3)
    legend = picture[24 + 96 * scale : 2 * 24 + 96 * scale].astype(int)
    for k in range(4):  # each tube's score in its colour, at a readable size
        color = np.array(TUBE_COLORS[k]) * 255
        near = np.abs(legend - color).sum(-1) < 120
        assert near.sum() > 15, k
    rows = np.nonzero((legend < 200).any(-1).any(-1))[0]
    assert rows.max() - rows.min() >= 12  # the legend's text boxes: about 14 pixels high
    tile = picture[24 : 24 + 96 * scale, : 128 * scale]
    vis = RVOSVisualizer(frames[0], scale=scale)
    vis.draw_tubes(boxes[:, 0], 1, scores)
    slow = vis.get_output().get_image()
    assert np.abs(tile.astype(int) - slow).mean() < 12  # the same picture, lines and labels
    for k in range(4):  # every tube's colour on its left side
        x = int(boxes[k, 0, 0] * scale)
        color = (np.array(TUBE_COLORS[k]) * 255).astype(int)
        side = tile[60:140, x - 1 : x + 2].astype(int)
        assert (np.abs(side - color).sum(-1) < 60).sum() > 20, k

    def line_width(k):  # the widest run of tube k's colour across its left side
        x = int(boxes[k, 0, 0] * scale)
        side = tile[60:140, x - 8 : x + 8].astype(int)
        return (np.abs(side - np.array(TUBE_COLORS[k]) * 255).sum(-1) < 60).sum(1).max()

    assert line_width(1) > max(line_width(0), line_width(2)) + 2  # the selected one: thick
    x, y = (int(v * scale) + 4 for v in boxes[3, 0, :2])  # tube 3's tag: a dark text box
    assert (tile[y : y + 14, x : x + 12].max(-1) < 60).mean() > 0.3
    band = picture[:24]
    assert (band < 250).any(axis=-1).sum() > 50  # the query's caption
    dog = picture[3 * 24 + 96 * scale :, : 128 * scale][
        20 * scale : 50 * scale, 30 * scale : 70 * scale
    ]
    assert np.abs(dog.astype(int) - cv2.resize(frames[0], None, fx=2, fy=2,
                  interpolation=cv2.INTER_NEAREST)[40:100, 60:140]).mean() > 20  # fmt: skip


def test_tube_panel_draws_every_tube(checkpoints, video):
    path, frames = video
    predictor = VideoPredictor(_cfg(checkpoints, "AAMN"), detector=_detector(checkpoints))
    item = next(iter(predictor(path, ["a man is running"])))
    r = item["queries"][0]
    output = {
        "tube_index": r["tube_index"],
        "tube_scores": torch.as_tensor(r["tube_scores"]),
        "all_tube_boxes": torch.as_tensor(r["all_tube_boxes"]),
        "word_attention": r["word_attention"],
        "clip_instances": [],
        "instances": None,
    }
    from detectron2.structures import Instances

    for t in range(3):
        inst = Instances((H, W))
        inst.pred_masks = torch.zeros((1, H, W), dtype=torch.bool)
        output["clip_instances"].append(inst)
    inst = Instances((H, W))
    inst.scores = torch.tensor([r["score"]])
    output["instances"] = inst
    record = {"query": "a man is running", "annotations": [], "instance_id": 1, "frame_idx": 1}
    picture = draw_tube_panel(record, output, None, frames[:3], scale=2.0)
    assert picture.shape[0] > 2 * 2 * H and picture.shape[1] >= 3 * 2 * W
    tubes_row = picture[: 2 * H]
    # each tube's colour is on the picture (a box outline in TUBE_COLORS[k])
    from aamn.utils.visualizer import TUBE_COLORS

    for k in range(4):
        color = (np.array(TUBE_COLORS[k]) * 255).astype(int)
        assert (np.abs(tubes_row.astype(int) - color).sum(-1) < 60).sum() > 10, k


def test_training_curves_from_metrics_json(tmp_path, caplog):
    lines = [
        {"iteration": 19, "total_loss": 3.0, "loss_match": 1.0, "aamn/match_accuracy": 0.2},
        {"iteration": 39, "total_loss": 2.0, "loss_match": 0.5, "aamn/match_accuracy": 0.5},
        {"iteration": 39, "segm/P@0.5": 40.0, "segm/mean_IoU": 35.0},
    ]
    path = tmp_path / "metrics.json"
    path.write_text("\n".join(json.dumps(x) for x in lines) + '\n{"iteration": 4')
    with caplog.at_level(logging.WARNING):
        assert len(read_metrics(str(path))) == 3
    assert "line 4" in caplog.text
    drawn = plot_training_curves(str(path), str(tmp_path / "curves.png"))
    assert drawn == {"losses": 2, "accuracy": 1, "lr": 0, "evaluation": 2}
    assert cv2.imread(str(tmp_path / "curves.png")).shape[0] > 100


def test_the_flow_function_is_the_predictors_argument(checkpoints, video):
    path, _ = video
    calls = []

    def still(a, b):
        calls.append(a.shape)
        return np.zeros(a.shape[:2] + (3,), np.float32)

    predictor = VideoPredictor(_cfg(checkpoints, "DynamicFilterSeg"), flow_fn=still)
    assert predictor.flow_fn is still
    predictor.predict(path, ["a man is running"])
    assert calls and all(s == (H, W, 3) for s in calls) and predictor.timings["flow"] > 0
    assert VideoPredictor(_cfg(checkpoints, "DynamicFilterSeg")).flow_fn.__name__ == "cache_flow"


def test_the_predictor_reads_its_config_in_one_place(checkpoints, tmp_path):
    """``VideoPredictor.__init__``: the config's checks, the trained model, the clips' mapper and
    (AAMN) the detector its checkpoint records: at most 5 steps, never back to a module left."""
    from modeling_helpers import module_steps
    from test_weights_urls import _with_detector_record

    for name in ("CMDy", "AAMN"):
        weights = _with_detector_record(checkpoints, tmp_path) if name == "AAMN" else None
        cfg = _cfg(checkpoints, name, *(["MODEL.WEIGHTS", weights] if weights else []))
        steps, returns = module_steps(lambda: VideoPredictor(cfg), "engine/predictor.py")
        assert len(steps) <= 5 and returns == [], steps
        expected = ["config.py", "modeling/checkpoint.py", "data/dataset_mappers/clip_mapper.py"]
        assert steps == expected + ["engine/proposal_detector.py"] * (name == "AAMN")
