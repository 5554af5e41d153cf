"""ClipDatasetMapper: a moving square keeps frames, flow, boxes, masks and proposals aligned after
resize and flip; edge padding; proposals padding; the query's left / right swap; clear errors."""

import time
import uuid

import numpy as np
import pytest
import torch
from detectron2.config import get_cfg
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T

from aamn.modeling.meta_arch.aamn_config import add_aamn_config
from aamn.data.dataset_mappers import ClipDatasetMapper
from aamn.data.datasets import register_a2d_sentences
from aamn.data.flow import dequantize_flow, quantize_flow
from aamn.data.proposals import save_proposals
from aamn.data.video import VideoReader
from fixtures import (
    SQ_H,
    SQ_SIZE,
    SQ_VELOCITY,
    SQ_W,
    square_position,
    register_square,
    square_proposals,
    write_square_tree,
)


@pytest.fixture(scope="module")
def square(tmp_path_factory):
    root, name, frames, flow = register_square(tmp_path_factory, (1, 5))
    records = {r["frame_idx"]: r for r in DatasetCatalog.get(name)}
    return root, name, records, frames, flow


def mapper(flip, scale=1.5, half_length=2, k=4, **kw):
    augs = [
        T.ResizeShortestEdge(int(SQ_H * scale), 10000),
        T.RandomFlip(prob=1.0 if flip else 0.0, horizontal=True),
    ]
    return ClipDatasetMapper(
        True,
        augmentations=augs,
        image_format="BGR",
        half_length=half_length,
        num_proposals=k,
        flow_bound=20.0,
        query_max_length=20,
        **kw,
    )


def expected_box(frame, scale, flip):
    x, y = square_position(frame)
    x1, y1, x2, y2 = x * scale, y * scale, (x + SQ_SIZE) * scale, (y + SQ_SIZE) * scale
    if flip:
        w = SQ_W * scale
        x1, x2 = w - x2, w - x1
    return np.array([x1, y1, x2, y2])


def bbox(mask):
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=float)


@pytest.mark.parametrize("flip,scale", [(False, 1.5), (True, 1.5), (True, 0.75)])
def test_moving_square_stays_aligned_after_resize_and_flip(square, flip, scale):
    """Enlarged, and shrunk by a non-integer factor (area interpolation of the 15- and
    10-channel stacks)."""
    _, _, records, _, _ = square
    out = mapper(flip, scale)(records[5])
    T_, h, w = 5, int(SQ_H * scale), int(SQ_W * scale)
    assert out["frame_indices"].tolist() == [3, 4, 5, 6, 7]
    assert out["image"].shape == (T_, 3, h, w) and out["image"].dtype == torch.uint8
    assert out["flow"].shape == (T_, 3, h, w) and out["flow"].dtype == torch.float32
    assert (out["height"], out["width"]) == (SQ_H, SQ_W)

    vx = -SQ_VELOCITY[0] * scale if flip else SQ_VELOCITY[0] * scale
    vy = SQ_VELOCITY[1] * scale
    bright_boxes = []
    for t, frame in enumerate(out["frame_indices"].tolist()):
        bright = out["image"][t].float().mean(0).numpy() > 128
        exp = expected_box(frame, scale, flip)
        # pixels: the bright square is where the geometry says
        np.testing.assert_allclose(bbox(bright), exp, atol=1.5)
        bright_boxes.append(bbox(bright))
        # proposals: the square's box, in the augmented frame
        np.testing.assert_allclose(out["proposal_boxes"][t, 0].numpy(), exp, atol=1e-3)
        # flow: the square's displacement, scaled and (x) negated; zero elsewhere
        fx, fy, mag = out["flow"][t].numpy()
        inner = np.zeros((h, w), bool)
        e = exp.round().astype(int)
        inner[e[1] + 2 : e[3] - 2, e[0] + 2 : e[2] - 2] = True
        assert np.allclose(fx[inner], vx, atol=0.15) and np.allclose(fy[inner], vy, atol=0.15)
        np.testing.assert_allclose(mag, np.hypot(fx, fy), rtol=1e-5, atol=1e-5)
        far = np.ones((h, w), bool)
        far[max(0, e[1] - 4) : e[3] + 4, max(0, e[0] - 4) : e[2] + 4] = False
        assert np.abs(fx[far]).max() < 0.2 and np.abs(fy[far]).max() < 0.2
    # frame t's square moved by its flow lands on frame t+1's square
    for t in range(T_ - 1):
        np.testing.assert_allclose(
            bright_boxes[t] + [vx, vy, vx, vy], bright_boxes[t + 1], atol=1.5
        )

    # the key frame's targets
    inst = out["instances"]
    assert inst.image_size == (h, w)
    assert inst.gt_instance_ids.tolist() == [2, 1] and out["referred_idx"] == 1
    assert inst.gt_classes.tolist() == [1, 0]
    exp = expected_box(5, scale, flip)
    np.testing.assert_allclose(inst.gt_boxes.tensor[1].numpy(), exp, atol=1e-3)
    ref_mask = inst.gt_masks.tensor[1].numpy()
    np.testing.assert_allclose(bbox(ref_mask), exp, atol=1.0)
    key_bright = out["image"][2].float().mean(0).numpy() > 128
    iou = (ref_mask & key_bright).sum() / (ref_mask | key_bright).sum()
    assert iou > (0.9 if scale > 1 else 0.75)  # a 9-pixel square loses its edges when shrunk
    # the static second instance: 8x10 box at (50, 36)
    other = np.array([50, 36, 60, 44]) * scale
    if flip:
        other = np.array([w - other[2], other[1], w - other[0], other[3]])
    np.testing.assert_allclose(inst.gt_boxes.tensor[0].numpy(), other, atol=1e-3)

    if flip:
        assert out["query"] == "the square moving to the right"
    else:
        assert out["query"] == "the square moving to the left"
    assert out["query_tokens"] == out["query"].split()

    # proposals padded to K = 4: the last box repeated, its score the lowest minus 1
    np.testing.assert_allclose(out["proposal_scores"][0].numpy(), [5.0, 1.0, 0.5, -0.5])
    assert torch.equal(out["proposal_boxes"][:, 3], out["proposal_boxes"][:, 2])


def test_identity_augmentation_returns_exact_frames_and_flow(square):
    root, name, records, _, flow = square
    cfg = add_aamn_config(get_cfg())
    cfg.INPUT.CLIP.HALF_LENGTH = 2
    cfg.INPUT.MIN_SIZE_TEST = SQ_H
    cfg.INPUT.MAX_SIZE_TEST = 1000
    cfg.INPUT.QUERY_MAX_LENGTH = 3
    cfg.INPUT.CLIP.NUM_PROPOSALS = 2
    cfg.DATASETS.TEST = (name,)
    m = ClipDatasetMapper(cfg, is_train=False)
    out = m(records[1])
    # edge padding at the start of the video
    assert out["frame_indices"].tolist() == [1, 1, 1, 2, 3]
    video = VideoReader(records[1]["file_name"]).read([1, 1, 1, 2, 3], format="BGR")
    np.testing.assert_array_equal(out["image"].numpy(), video.transpose(0, 3, 1, 2))
    exp_flow = dequantize_flow(quantize_flow(flow[[0, 0, 0, 1, 2]], 20.0), 20.0)
    np.testing.assert_allclose(
        out["flow"][:, :2].numpy(), exp_flow[..., :2].transpose(0, 3, 1, 2), atol=1e-5
    )
    assert out["proposal_boxes"].shape == (5, 2, 4)
    assert out["query_tokens"] == ["the", "square", "moving"]
    assert out["instances"].gt_masks.tensor.shape == (2, SQ_H, SQ_W)


def test_flow_disabled_and_no_swap(square):
    _, _, records, _, _ = square
    out = mapper(True, use_flow=False, flip_swaps_left_right=False)(records[5])
    assert "flow" not in out
    assert out["query"] == "the square moving to the left"


def test_flow_cache_of_another_method_is_an_error(square):
    """The config's INPUT.FLOW.METHOD reaches the mapper, which refuses a cache written with
    another method (the square's cache says "dis")."""
    from aamn.config import get_aamn_cfg

    _, _, records, _, _ = square
    cfg = get_aamn_cfg("", ["INPUT.FLOW.METHOD", "dis_fast"])
    assert ClipDatasetMapper.from_config(cfg, is_train=True)["flow_method"] == "dis_fast"
    assert mapper(False, flow_method="dis")(records[5])["flow"].shape[0] == 5
    with pytest.raises(ValueError, match="computed with 'dis'.*INPUT.FLOW.METHOD 'dis_fast'"):
        mapper(False, flow_method="dis_fast")(records[5])


def test_missing_proposal_file_and_flow_are_clear_errors(square, tmp_path):
    root, name, records, _, _ = square
    rec = dict(records[5])
    m = mapper(False, proposal_files={name: str(tmp_path / "absent.pkl")})
    with pytest.raises(FileNotFoundError, match=r"absent\.pkl.*prepare_proposals\.py"):
        m(rec)
    m = mapper(False, flow_dir=str(tmp_path / "noflow"))
    with pytest.raises(FileNotFoundError, match=r"noflow.*prepare_flow\.py"):
        m(rec)
    partial = tmp_path / "partial.pkl"
    ids, boxes, logits = square_proposals()
    save_proposals(partial, ids[:2], boxes[:2], logits[:2])
    with pytest.raises(KeyError, match=r"square/00003"):
        mapper(False, proposal_files={name: str(partial)})(rec)


def test_empty_proposals_get_the_full_frame(square, tmp_path):
    _, name, records, _, _ = square
    ids, _, _ = square_proposals()
    path = tmp_path / "empty.pkl"
    # the first frame holds a box (a file without any box is refused), the others none
    boxes = [np.array([[1.0, 1.0, 5.0, 5.0]])] + [np.zeros((0, 4))] * (len(ids) - 1)
    save_proposals(path, ids, boxes, [np.ones(1)] + [np.zeros((0,))] * (len(ids) - 1))
    out = mapper(False, scale=1.0, k=2, proposal_files={name: str(path)})(records[5])
    assert out["proposal_boxes"][0].tolist() == [[0, 0, SQ_W, SQ_H]] * 2
    assert out["proposal_scores"][0].tolist() == [-1.0, -1.0]


def test_mapper_speed(square):
    """Per-sample cost at the main job's size class (48x64 frames here, 5-frame clips)."""
    _, _, records, _, _ = square
    m = mapper(True, scale=2.0, half_length=2, k=6)
    m(records[5])
    n = 30
    start = time.perf_counter()
    for i in range(n):
        m(records[5 if i % 2 else 1])
    ms = (time.perf_counter() - start) / n * 1000
    print(f"ClipDatasetMapper: {ms:.2f} ms per sample (5 frames, 96x128 output)")
    assert ms < 100


def test_forked_loader_workers_after_the_main_process_read_videos(square):
    """Data-loader workers fork after the main process opened videos: no hang, same output."""
    _, _, records, _, _ = square
    m = mapper(False, scale=1.0)
    expected = m(records[5])["image"]  # leaves an open capture in this process
    loader = torch.utils.data.DataLoader(
        [records[5], records[1]] * 2,
        batch_size=2,
        num_workers=2,
        timeout=60,
        collate_fn=lambda batch: [m(r) for r in batch],
        multiprocessing_context="fork",
    )
    batches = list(loader)
    assert len(batches) == 2
    assert torch.equal(batches[0][0]["image"], expected)
