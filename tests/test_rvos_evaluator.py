"""ReferringVideoEvaluator: the protocols on hand-counted samples, the per-sample file, the
synthetic benchmark's query types, inference speed, and a 2-process run equal to a 1-process one."""

import json
import logging
import os
import pickle
import sys
import types
import uuid

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import print_csv_format
from detectron2.structures import BoxMode, Boxes, Instances
from torch import nn

from aamn.evaluation import ReferringVideoEvaluator, compute_rvos_metrics, inference_on_rvos_dataset

H, W = 10, 20


def rect(x0, y0, x1, y1, h=H, w=W):
    m = np.zeros((h, w), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def rle(mask):
    r = mask_util.encode(np.asfortranarray(mask.astype(np.uint8)))
    r["counts"] = r["counts"].decode()
    return r


def record(video_id, frame_idx, instance_id, gt_mask, gt_box, query="a person walking", others=()):
    """A record of the record contract; ``others`` are (instance_id, mask, box) distractors."""
    h, w = gt_mask.shape
    anns = [
        {
            "instance_id": i,
            "bbox": list(b),
            "bbox_mode": BoxMode.XYXY_ABS,
            "segmentation": rle(m),
            "category_id": 0,
        }
        for i, m, b in list(others) + [(instance_id, gt_mask, gt_box)]
    ]
    return {
        "file_name": "{}.mp4".format(video_id),
        "video_id": video_id,
        "frame_idx": frame_idx,
        "length": 20,
        "height": h,
        "width": w,
        "query": query,
        "instance_id": instance_id,
        "image_id": "v_{}_f_{}_i_{}".format(video_id, frame_idx, instance_id),
        "annotations": anns,
    }


def output(mask, box, score):
    """The model's output dict for one input (key frame at the original size)."""
    inst = Instances(mask.shape)
    inst.pred_masks = torch.as_tensor(mask)[None]
    inst.pred_boxes = Boxes(torch.tensor([box], dtype=torch.float32))
    inst.scores = torch.tensor([score])
    inst.pred_classes = torch.tensor([0])
    return {"instances": inst}


def register(records, **metadata):
    name = "rvos_eval_test_" + uuid.uuid4().hex[:8]
    DatasetCatalog.register(name, lambda: records)
    MetadataCatalog.get(name).set(evaluator_type="rvos", **metadata)
    return name


def unregister(name):
    DatasetCatalog.remove(name)
    MetadataCatalog.remove(name)


def hand_counted():
    """Four samples of three (video, query) pairs whose counts are known exactly.

    sample  (video, inst, frame)  pred mask vs GT mask   selected box vs GT box   mask box vs GT box
    A       (va, 1, 1)            61 / 100  (0.61)        100 / 100                100 / 100
    B       (va, 1, 2)            50 / 150  (1/3)         50 / 150                 50 / 150
    C       (va, 2, 1)            50 / 50   (1)           50 / 50                  50 / 50
    D       (vb, 1, 3)            0 / 200   (0, empty)    200 / 200                0 / 200 (empty)
    """
    gt_a = rect(0, 0, 10, 10)
    pred_a = rect(0, 0, 10, 6)
    pred_a[9, 9] = True
    distractor = (2, rect(10, 0, 20, 5), [10, 0, 20, 5])
    samples = [
        (
            record("va", 1, 1, gt_a, [0, 0, 10, 10], others=[distractor]),
            output(pred_a, [0, 0, 10, 10], 0.9),
        ),
        (
            record("va", 2, 1, rect(0, 0, 10, 10), [0, 0, 10, 10]),
            output(rect(5, 0, 15, 10), [5, 0, 15, 10], 0.4),
        ),
        (
            record(
                "va",
                1,
                2,
                rect(10, 0, 20, 5),
                [10, 0, 20, 5],
                query="the dog on the right",
                others=[(1, gt_a, [0, 0, 10, 10])],
            ),
            output(rect(10, 0, 20, 5), [10, 0, 20, 5], 0.8),
        ),
        (
            record("vb", 3, 1, rect(0, 0, 20, 10), [0, 0, 20, 10], query="a car rolling"),
            output(np.zeros((H, W), bool), [0, 0, 20, 10], 0.1),
        ),
    ]
    return samples


def run(name, samples, **kwargs):
    ev = ReferringVideoEvaluator(name, **kwargs)
    ev.reset()
    for rec, out in samples:
        ev.process([{"image_id": rec["image_id"]}], [out])
    return ev.evaluate()


@pytest.fixture
def hand_dataset():
    samples = hand_counted()
    name = register([r for r, _ in samples])
    yield name, samples
    unregister(name)


def test_protocols_against_hand_counts(hand_dataset):
    name, samples = hand_dataset
    res = run(name, samples, distributed=False)
    assert list(res) == ["segm", "loc", "segm_full_video", "bbox_full_video", "query_swap"]
    a = pytest.approx
    segm = res["segm"]  # IoUs 0.61, 1/3, 1, 0
    assert [segm["P@0.{}".format(t)] for t in range(5, 10)] == a([50, 50, 25, 25, 25])
    assert segm["mAP"] == a(100 * 13 / 40)  # above .50 .55 .60: 2 each; .65 ... .95: 1 each
    assert segm["overall_IoU"] == a(100 * 161 / 500)
    assert segm["mean_IoU"] == a(100 * (0.61 + 1 / 3 + 1 + 0) / 4)
    # Single-frame metrics equal compute_rvos_metrics on the same masks and scores.
    gts = [mask_util.decode(r["annotations"][-1]["segmentation"]) for r, _ in samples]
    preds = [o["instances"].pred_masks[0].numpy() for _, o in samples]
    scores = [float(o["instances"].scores[0]) for _, o in samples]
    assert segm == a(compute_rvos_metrics(preds, gts, scores))

    loc = res["loc"]  # box IoUs 1, 1/3, 1, 1 (AAMN Table I)
    assert sorted(loc) == sorted(["P@0.5", "P@0.6", "P@0.7", "P@0.8", "P@0.9", "mean_IoU"])
    assert [loc["P@0.{}".format(t)] for t in range(5, 10)] == a([75] * 5)
    assert loc["mean_IoU"] == a(100 * (3 + 1 / 3) / 4)

    full = res["segm_full_video"]  # (va,1): 111/250, (va,2): 50/50, (vb,1): 0/200
    assert [full["P@0.{}".format(t)] for t in range(5, 10)] == a([100 / 3] * 5)
    assert full["mAP"] == a(100 / 3)
    assert full["overall_IoU"] == a(100 * 161 / 500)
    assert full["mean_IoU"] == a(100 * (111 / 250 + 1 + 0) / 3)

    bbox = res["bbox_full_video"]  # (va,1): 150/250 = 0.6 (on a threshold), (va,2): 1, (vb,1): 0
    assert [bbox["P@0.{}".format(t)] for t in range(5, 10)] == a([200 / 3] + [100 / 3] * 4)
    assert bbox["mAP"] == a(100 * 12 / 30)
    assert bbox["overall_IoU"] == a(100 * 200 / 500)
    assert bbox["mean_IoU"] == a(100 * 1.6 / 3)


def test_query_swap_counts_pairs_whose_predictions_follow_their_queries(hand_dataset):
    """Samples A and C of va's frame 1 refer to actors 1 and 2: A's mask lies on actor 1 and C's
    on actor 2, so the one pair moved with its query.  A model that ignores the query (the same
    mask for both) scores 0, and so does one that segments actor 2 for both queries."""
    name, samples = hand_dataset
    assert run(name, samples, distributed=False)["query_swap"] == {"moved": 100.0, "pairs": 1.0}
    (a_rec, a_out), _, (c_rec, c_out), _ = samples
    assert run(name, [(a_rec, a_out), (c_rec, a_out)], distributed=False)["query_swap"] == {
        "moved": 0.0,
        "pairs": 1.0,
    }
    assert (
        run(name, [(a_rec, c_out), (c_rec, c_out)], distributed=False)["query_swap"]["moved"] == 0
    )
    # frames with a single referred actor have no pair: no section
    assert "query_swap" not in run(name, [samples[1], samples[3]], distributed=False)


def test_results_print_with_detectron2_csv_format(hand_dataset, caplog):
    name, samples = hand_dataset
    res = run(name, samples, distributed=True)  # one process: gathers to itself
    for block in res.values():
        assert all(isinstance(v, float) and "-" not in k for k, v in block.items())
    with caplog.at_level(logging.INFO):
        print_csv_format(res)
    text = caplog.text
    assert "copypaste: Task: segm" in text and "copypaste: Task: loc" in text
    assert "P@0.5,P@0.6,P@0.7,P@0.8,P@0.9,mAP,overall_IoU,mean_IoU,COCO_mAP" in text


def test_per_sample_json(hand_dataset, tmp_path):
    name, samples = hand_dataset
    run(name, samples, distributed=False, output_dir=str(tmp_path))
    rows = json.loads((tmp_path / "rvos_per_sample.json").read_text())
    assert [f for f in os.listdir(tmp_path)] == ["rvos_per_sample.json"]  # no temporary left
    assert len(rows) == 4
    row = {r["image_id"]: r for r in rows}["v_va_f_1_i_1"]
    assert row["video_id"] == "va" and row["frame_idx"] == 1 and row["query"] == "a person walking"
    assert row["IoU"] == pytest.approx(0.61) and row["score"] == pytest.approx(0.9)
    assert row["box"] == [0, 0, 10, 10] and row["gt_box"] == [0, 0, 10, 10]
    assert row["box_IoU"] == pytest.approx(1.0)
    run(name, samples, distributed=False, output_dir=str(tmp_path / "off"), save_per_sample=False)
    assert not (tmp_path / "off").exists()


def test_unknown_image_id_and_wrong_size_raise(hand_dataset):
    name, samples = hand_dataset
    ev = ReferringVideoEvaluator(name, distributed=False)
    with pytest.raises(KeyError, match="v_zz_f_1_i_1.*" + name):
        ev.process([{"image_id": "v_zz_f_1_i_1"}], [samples[0][1]])
    small = output(np.zeros((5, 5), bool), [0, 0, 1, 1], 0.5)
    with pytest.raises(ValueError, match="original frame size"):
        ev.process([{"image_id": samples[0][0]["image_id"]}], [small])


def test_no_predictions_returns_empty(hand_dataset):
    name, _ = hand_dataset
    assert run(name, [], distributed=False) == {}


def test_synthetic_benchmark_breakdown_by_query_type(hand_dataset, tmp_path, monkeypatch):
    _, samples = hand_dataset
    meta = {
        "queries": [
            {"video_id": "va", "instance_id": 1, "types": ["needs_action"]},
            {"video_id": "va", "instance_id": 2, "types": ["needs_action", "needs_location"]},
            {"video_id": "vb", "instance_id": 1, "types": ["needs_appearance"]},
        ]
    }
    meta_path = tmp_path / "synthetic_meta.json"
    meta_path.write_text(json.dumps(meta))

    def query_types(m):
        return {(q["video_id"], q["instance_id"]): set(q["types"]) for q in m["queries"]}

    fake = types.ModuleType("aamn.data.synthetic")
    fake.query_types = query_types
    monkeypatch.setitem(sys.modules, "aamn.data.synthetic", fake)
    name = register([r for r, _ in samples], synthetic_meta=str(meta_path))
    try:
        res = run(name, samples, distributed=False)
    finally:
        unregister(name)
    assert list(res)[5:] == ["segm_needs_action", "segm_needs_appearance", "segm_needs_location"]
    # needs_action: A, B, C (IoUs .61, 1/3, 1); appearance: D (0); location: C (1).
    assert res["segm_needs_action"]["mean_IoU"] == pytest.approx(100 * (0.61 + 1 / 3 + 1) / 3)
    assert res["segm_needs_action"]["P@0.6"] == pytest.approx(200 / 3)
    assert res["segm_needs_appearance"]["mean_IoU"] == 0.0
    assert res["segm_needs_location"]["P@0.9"] == 100.0
    assert res["segm_needs_location"]["COCO_mAP"] == pytest.approx(100.0)


class FixedModel(nn.Module):
    """Returns the stored output of each input's image_id."""

    def __init__(self, outputs, frames=None):
        super().__init__()
        self.outputs = outputs
        self.frames = frames  # segment this many frames per input (AAMN's clip_instances)
        self.layer = nn.Linear(1, 1)

    def forward(self, inputs):
        assert not self.training
        outs = [dict(self.outputs[inp["image_id"]]) for inp in inputs]
        if self.frames:
            for o in outs:
                o["clip_instances"] = [o["instances"]] * self.frames
        return outs


@pytest.mark.parametrize("T", [5, 1])
def test_inference_reports_speed_per_clip_query_and_frames(hand_dataset, caplog, T):
    """A model that segments every frame of its clip counts T frames per input, one that predicts
    the key frame (no ``clip_instances``) counts 1, whatever the clip length."""
    name, samples = hand_dataset
    batches = [
        [{"image_id": r["image_id"], "frame_indices": torch.arange(1, 6)}] for r, _ in samples
    ]
    model = FixedModel({r["image_id"]: o for r, o in samples}, frames=T if T > 1 else None)
    model.train()
    with caplog.at_level(logging.INFO):
        res = inference_on_rvos_dataset(model, batches, ReferringVideoEvaluator(name))
    assert model.training  # restored
    assert list(res)[-1] == "speed" and res["segm"] == run(name, samples, distributed=False)["segm"]
    speed = res["speed"]
    assert speed["ms_per_clip_query"] > 0 and speed["frames_per_second"] > 0
    # frames/s * s/clip-query = frames per clip-query = T (warm-up iterations excluded alike)
    assert speed["frames_per_second"] * speed["ms_per_clip_query"] / 1000 == pytest.approx(T)
    assert "ms per clip-query" in caplog.text and "frames per second" in caplog.text
    assert "Total inference pure compute time" in caplog.text


# ---------------------------------------------------------------------- 2 processes
def random_dataset(seed=0, n_videos=5, frames=3, h=16, w=24):
    """Records and outputs of random rectangles: n_videos videos x 2 queries x frames frames."""
    rng = np.random.RandomState(seed)
    samples = []
    for v in range(n_videos):
        for inst in (1, 2):
            for f in range(1, frames + 1):
                x0, y0 = rng.randint(0, w // 2), rng.randint(0, h // 2)
                gt = rect(x0, y0, x0 + rng.randint(2, w // 2), y0 + rng.randint(2, h // 2), h, w)
                px, py = x0 + rng.randint(-3, 4), y0 + rng.randint(-3, 4)
                pred = rect(
                    max(px, 0),
                    max(py, 0),
                    max(px, 0) + rng.randint(1, w // 2),
                    max(py, 0) + rng.randint(1, h // 2),
                    h,
                    w,
                )
                pred ^= rng.rand(h, w) < 0.05
                ys, xs = np.nonzero(gt)
                gt_box = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
                box = [float(c + rng.randint(-2, 3)) for c in gt_box]
                rec = record(
                    "vid{}".format(v),
                    f,
                    inst,
                    gt,
                    [float(c) for c in gt_box],
                    query="query {} of video {}".format(inst, v),
                )
                samples.append((rec, output(pred, box, float(rng.rand()))))
    return samples


def _worker(rank, world_size, init_file, result_path):
    import torch.distributed as dist

    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    torch.set_num_threads(1)
    # A file rendezvous: no TCP port to pick (and possibly lose to another process).
    dist.init_process_group(
        "gloo", init_method="file://" + init_file, rank=rank, world_size=world_size
    )
    try:
        samples = random_dataset()
        name = register([r for r, _ in samples])
        mine = samples[rank::world_size]
        if rank == 1:
            mine = mine + [samples[0]]  # a sample seen by both processes counts once
        res = run(name, mine, distributed=True, output_dir=os.path.dirname(result_path))
        if rank == 0:
            with open(result_path, "wb") as f:
                pickle.dump(res, f)
        else:
            assert res == {}
        dist.barrier()  # neither process leaves while the other still talks to it
    finally:
        dist.destroy_process_group()


def test_two_process_evaluation_equals_one_process(tmp_path):
    import torch.multiprocessing as mp

    result_path = str(tmp_path / "two" / "results.pkl")
    os.makedirs(os.path.dirname(result_path))
    init_file = str(tmp_path / "rendezvous")
    mp.spawn(_worker, args=(2, init_file, result_path), nprocs=2, join=True)
    with open(result_path, "rb") as f:
        two = pickle.load(f)

    samples = random_dataset()
    name = register([r for r, _ in samples])
    try:
        one = run(name, samples, distributed=False, output_dir=str(tmp_path / "one"))
    finally:
        unregister(name)
    assert list(two) == list(one) == ["segm", "loc", "segm_full_video", "bbox_full_video"]
    assert two == one  # exactly
    assert 0 < one["segm"]["mean_IoU"] < 100 and 0 < one["loc"]["P@0.5"] < 100
    per_sample = [
        json.loads((tmp_path / d / "rvos_per_sample.json").read_text()) for d in ("one", "two")
    ]
    assert per_sample[0] == per_sample[1] and len(per_sample[0]) == len(samples)


def test_reference_levels_against_hand_counts(hand_dataset):
    """The random actor and the union of the actors of each sample's frame: in va's frame 1 two
    disjoint actors (100 and 50 pixels), every other frame one actor."""
    from aamn.evaluation.reference_levels import actor_reference_levels

    name, _ = hand_dataset
    levels = actor_reference_levels(DatasetCatalog.get(name))
    a = pytest.approx
    # expected over a uniform choice: A 1/2 (itself or the other), B 1, C 1/2, D 1
    assert levels["random_actor"]["P@0.5"] == a(75.0)
    assert levels["random_actor"]["P@0.9"] == a(75.0)
    assert levels["random_actor"]["mean_IoU"] == a(75.0)
    union = levels["union_of_actors"]  # IoUs A 100/150, B 1, C 50/150, D 1
    assert union["P@0.5"] == a(75.0) and union["P@0.7"] == a(50.0)
    assert union["mean_IoU"] == a(100 * (2 / 3 + 1 + 1 / 3 + 1) / 4)
    assert union["overall_IoU"] == a(100 * 450 / 600)


def test_oracle_tube_selection_picks_the_tube_on_the_referred_actor_in_the_key_frame():
    from aamn.evaluation.reference_levels import oracle_tube_selection

    model = types.SimpleNamespace(device=torch.device("cpu"))
    # 1 clip, 3 tubes, 3 frames: tube 0 scores best and covers the box in the first frame only;
    # tube 2 covers it in the key (middle) frame.
    far, box = [50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]
    tubes = torch.tensor([[[box, far, far], [far, far, far], [far, box, far]]])
    x = {"image": torch.zeros(3, 20, 40), "height": 10, "width": 20, "oracle_box": [0, 0, 5, 5]}
    with oracle_tube_selection(model):
        chosen = model.select_tubes([x], torch.tensor([[5.0, 0.0, -5.0]]), tubes)
    assert chosen.tolist() == [2]  # the oracle box at the input's size, doubled in the image
    assert not hasattr(model, "select_tubes")


def test_best_tube_level_scores_the_tube_on_the_referred_actor(hand_dataset):
    """best_tube_level runs the model with the oracle selection: each input gets its referred
    actor's box from the data set, and the tube on it is segmented. The stand-in model has two
    tubes per input: tube 0, its best-scored, on nothing; tube 1 on the referred actor."""
    from aamn.evaluation.reference_levels import best_tube_level

    name, samples = hand_dataset
    records = {r["image_id"]: r for r, _ in samples}

    class TwoTubes:
        device = torch.device("cpu")

        def select_tubes(self, batched_inputs, own, tube_boxes):
            return own.argmax(dim=1)

        def __call__(self, batched_inputs):
            tubes = []
            for x in batched_inputs:
                (ann,) = [a for a in records[x["image_id"]]["annotations"]
                          if a["instance_id"] == records[x["image_id"]]["instance_id"]]  # fmt: skip
                tubes.append([[[15.0, 8.0, 16.0, 9.0]] * 3, [ann["bbox"]] * 3])
            tube_boxes = torch.tensor(tubes)  # (B, K=2, T=3, 4)
            chosen = self.select_tubes(batched_inputs, torch.tensor([[5.0, 0.0]] * len(tubes)),
                                       tube_boxes)  # fmt: skip
            outs = []
            for x, k in zip(batched_inputs, chosen.tolist()):
                gt = mask_util.decode([a for a in records[x["image_id"]]["annotations"]
                                       if a["instance_id"] == records[x["image_id"]]["instance_id"]
                                       ][0]["segmentation"]).astype(bool)  # fmt: skip
                mask = gt if k == 1 else np.zeros_like(gt)
                outs.append(output(mask, [0, 0, 1, 1], 1.0))
            return outs

    loader = [[{"image_id": r["image_id"], "image": torch.zeros(3, H, W), "height": H,
                "width": W}] for r, _ in samples]  # fmt: skip
    model = TwoTubes()
    assert best_tube_level(model, loader, name)["P@0.5"] == pytest.approx(100.0)
    # without the oracle the best-scored tube (on nothing) is taken
    res = inference_on_rvos_dataset(model, loader, ReferringVideoEvaluator(name, distributed=False))
    assert res["segm"]["P@0.5"] == 0.0
