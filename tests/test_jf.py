"""J, F and J&F (the DAVIS protocol, aamn.evaluation.jf): J against an independent implementation
(davisinteractive's), F on hand-counted cases inside and outside the boundary tolerance, the
averaging per expression then over expressions, the evaluator on records, and tools/eval_jf.py on
a Ref-YouTube-VOS-layout tree."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from aamn.evaluation.jf import boundary_f, jaccard, jf_summary, score_folders, seg2bmap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def band(cols, rows=slice(None), shape=(100, 100)):
    m = np.zeros(shape, bool)
    m[rows, cols] = True
    return m


@pytest.fixture
def davis(monkeypatch):
    """davisinteractive's metrics (1.0.4 uses the aliases numpy 1.24 removed)."""
    monkeypatch.setattr(np, "int", int, raising=False)
    monkeypatch.setattr(np, "float", float, raising=False)
    from davisinteractive.metrics import batched_f_measure, batched_jaccard

    return batched_jaccard, batched_f_measure


def test_j_and_f_equal_davisinteractives_on_random_masks(davis):
    batched_jaccard, batched_f_measure = davis
    rng = np.random.default_rng(0)
    for _ in range(20):
        h, w = rng.integers(20, 80, size=2)
        gt = np.zeros((h, w), bool)
        y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
        gt[y : y + rng.integers(3, h // 2), x : x + rng.integers(3, w // 2)] = True
        pred = np.roll(gt, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
        pred[rng.random((h, w)) < 0.02] = True  # speckles: boundary pixels far from G's
        ref_j = batched_jaccard(gt[None].astype(int), pred[None].astype(int))[0]
        ref_f = batched_f_measure(gt[None].astype(int), pred[None].astype(int))[0]
        assert jaccard(pred, gt) == pytest.approx(ref_j)
        assert boundary_f(pred, gt) == pytest.approx(ref_f)
    assert jaccard(np.zeros((4, 4)), np.zeros((4, 4))) == 1.0  # both empty


def test_f_of_a_boundary_inside_and_outside_the_tolerance():
    """100 x 100: the tolerance is ceil(0.008 * 141.4) = 2 pixels.  G is the left half (its
    boundary: column 49); P moved right by 1 or 2 columns is within it (F 1), by 3 outside
    (F 0)."""
    gt = band(slice(0, 50))
    assert seg2bmap(gt).sum() == 100 and seg2bmap(gt)[:, 49].all()
    assert boundary_f(band(slice(0, 51)), gt) == 1.0  # shifted by one pixel
    assert boundary_f(band(slice(0, 52)), gt) == 1.0
    assert boundary_f(band(slice(0, 53)), gt) == 0.0
    assert jaccard(band(slice(0, 51)), gt) == pytest.approx(50 / 51)


def test_f_counted_by_hand_and_its_empty_cases():
    """P, the top-left quadrant: boundary column 49 rows 0-49 and row 49 columns 0-48 (99
    pixels); 52 of them lie within 2 pixels of G's column 49 (the column and columns 47-48 of row
    49), and 52 of G's 100 (rows 0-51) within 2 pixels of P's."""
    gt, pred = band(slice(0, 50)), band(slice(0, 50), slice(0, 50))
    assert seg2bmap(pred).sum() == 99
    p, r = 52 / 99, 52 / 100
    assert boundary_f(pred, gt) == pytest.approx(2 * p * r / (p + r))
    empty = np.zeros((100, 100), bool)
    assert boundary_f(empty, empty) == 1.0
    assert boundary_f(empty, gt) == 0.0 and boundary_f(gt, empty) == 0.0


def test_each_expression_weighs_the_same_whatever_its_frames():
    rows = [("a", 1.0, 0.5), ("a", 0.0, 0.5), ("a", 0.5, 0.5), ("b", 1.0, 1.0)]
    s = jf_summary(rows)
    assert s["J"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert s["F"] == pytest.approx(100 * (0.5 + 1.0) / 2)
    assert s["J&F"] == pytest.approx(75.0) and s["expressions"] == 2 and s["frames"] == 4


def test_the_evaluator_scores_records_per_expression():
    """Two expressions of one video (A2D's records: one per query and frame), the first right in
    both its frames, the second empty against a mask; a MeViS-like record of two instances
    targets their union."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.structures import Instances

    from aamn.evaluation.jf import JFEvaluator
    from aamn.utils.masks import mask_to_rle

    left, right = band(slice(0, 50)), band(slice(50, 100))
    ann = [{"instance_id": 1, "segmentation": mask_to_rle(left)},
           {"instance_id": 2, "segmentation": mask_to_rle(right)}]  # fmt: skip

    def rec(frame, inst, query, **kw):
        return dict(image_id=f"v_x_f_{frame}_i_{inst}_{query}", video_id="x", frame_idx=frame,
                    instance_id=inst, query=query, height=100, width=100, annotations=ann,
                    **kw)  # fmt: skip

    records = [
        rec(1, 1, "q1"),
        rec(2, 1, "q1"),
        rec(1, 2, "q2"),
        rec(1, 1, "both", instance_ids=[1, 2]),
    ]
    DatasetCatalog.register("jf_fixture", lambda: records)
    try:
        ev = JFEvaluator("jf_fixture", distributed=False)
        ev.reset()
        preds = [left, left, np.zeros((100, 100), bool), left]

        def out(m):
            inst = Instances((100, 100))
            inst.pred_masks = torch.from_numpy(m)[None]
            inst.scores = torch.tensor([1.0])
            return {"instances": inst}

        ev.process([{"image_id": r["image_id"]} for r in records], [out(m) for m in preds])
        res = ev.evaluate()["jf"]
    finally:
        DatasetCatalog.remove("jf_fixture")
    # J per expression: q1 1.0, q2 0.0, both 0.5; F: q1 1, q2 0, both: its boundary (column 49)
    # against the full frame's (none: the union covers the frame): 0
    assert res["J"] == pytest.approx(100 * 1.5 / 3)
    assert res["F"] == pytest.approx(100 * 1.0 / 3)


def write_png(path, array, palette=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    im = Image.fromarray(array.astype(np.uint8), mode="P" if palette else "L")
    if palette:
        im.putpalette([0, 0, 0, 236, 95, 103, 249, 145, 87] + [0] * (256 * 3 - 9))
    im.save(path)


@pytest.fixture
def ytvos_tree(tmp_path):
    """A Ref-YouTube-VOS-layout ground truth (palette PNGs of object ids, every 5th frame) and
    predictions in tools/infer.py's layout: expression 0 (object 1) right, expression 1
    (objects 1 and 2, MeViS's list form) half right."""
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    ids = np.zeros((100, 100), np.uint8)
    ids[:, :50], ids[:, 50:] = 1, 2
    meta = {"videos": {"vid": {"frames": ["00000", "00005"], "expressions": {
        "0": {"exp": "the left one", "obj_id": "1"},
        "1": {"exp": "both", "obj_id": [1, 2]}}}}}  # fmt: skip
    gt.mkdir()
    (gt / "meta_expressions.json").write_text(json.dumps(meta))
    for frame in ("00000", "00005"):
        write_png(str(gt / "Annotations" / "vid" / f"{frame}.png"), ids, palette=True)
        write_png(
            str(pred / "Annotations" / "vid" / "0" / f"{frame}.png"), 255 * band(slice(0, 50))
        )
        write_png(
            str(pred / "Annotations" / "vid" / "1" / f"{frame}.png"), 255 * band(slice(0, 50))
        )
    return gt, pred


def test_infer_layout_scored_against_a_ytvos_tree(ytvos_tree, tmp_path):
    gt, pred = ytvos_tree
    args = (str(gt / "Annotations"), str(gt / "meta_expressions.json"))
    s = score_folders(str(pred), *args)
    assert s["expressions"] == 2 and s["frames"] == 4
    assert s["J"] == pytest.approx(100 * (1.0 + 0.5) / 2)
    assert s["F"] == pytest.approx(100 * (1.0 + 0.0) / 2)
    os.remove(pred / "Annotations" / "vid" / "1" / "00005.png")
    with pytest.raises(FileNotFoundError, match=os.path.join("vid", "1", "00005.png")):
        score_folders(str(pred), *args)


def test_eval_jf_tool_prints_and_writes_percent(ytvos_tree, tmp_path):
    gt, pred = ytvos_tree
    out = tmp_path / "jf.json"
    cmd = [sys.executable, os.path.join(REPO, "tools", "eval_jf.py"), str(pred), "--gt", str(gt)]
    proc = subprocess.run(cmd + ["--output", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    assert set(res) == {"J", "F", "J&F"} and res["J&F"] == pytest.approx((75.0 + 50.0) / 2)
    assert "J&F" in proc.stdout and "62.5" in proc.stdout
    bad = subprocess.run(cmd[:-2] + ["--gt", str(tmp_path / "nothing")], capture_output=True,
                         text=True)  # fmt: skip
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert "meta_expressions.json" in bad.stderr


def test_eval_jf_reads_a_registered_ytvos_split_and_absent_objects_count(tmp_path):
    """--dataset ref_youtube_vos_train ($AAMN_DATASETS): the ground truth of the registered split;
    predictions equal to the masks score 100, empty where the object is absent included; one
    expression predicted empty everywhere scores J 0 where its object is and 1 where it is not."""
    from fixtures import YTVOS_EXPRESSIONS, write_ytvos_tree

    ids = write_ytvos_tree(str(tmp_path / "ref-youtube-vos"))
    pred = tmp_path / "pred"
    for (vid, frame), frame_ids in ids.items():
        for exp_id, (_, obj) in YTVOS_EXPRESSIONS[vid].items():
            path = pred / "Annotations" / vid / exp_id / f"{frame}.png"
            write_png(str(path), 255 * (frame_ids == int(obj)))
    env = dict(os.environ, AAMN_DATASETS=str(tmp_path))
    cmd = [sys.executable, os.path.join(REPO, "tools", "eval_jf.py"), str(pred)]
    cmd += ["--dataset", "ref_youtube_vos_train", "--output", str(tmp_path / "jf.json")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "jf.json").read_text()) == {"J": 100.0, "F": 100.0, "J&F": 100.0}
    # the dog (expression 1 of the first video) is absent from its first frame: predicted empty
    # everywhere, J is 1/3 (that frame) and F 1/3
    for frame in ("00000", "00005", "00010"):
        write_png(str(pred / "Annotations" / "0a1b2c3d4e" / "1" / f"{frame}.png"),
                  np.zeros((36, 48), np.uint8))  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    res = json.loads((tmp_path / "jf.json").read_text())
    assert res["J"] == pytest.approx(100 * (1 + 1 / 3 + 1) / 3)
    assert res["F"] == pytest.approx(100 * (1 + 1 / 3 + 1) / 3)


def test_ref_davis_averages_its_annotators_not_their_expressions():
    """With ``per_annotator`` (Ref-DAVIS17's protocol) each annotator's expressions are averaged
    apart and the two means averaged: annotator 0's two expressions score J 1 and 0, annotator
    1's one expression 1, so J is 75 (pooled over the three expressions it would be 66.7)."""
    import torch
    from detectron2.data import DatasetCatalog, MetadataCatalog
    from detectron2.structures import Instances

    from aamn.evaluation.jf import JFEvaluator
    from aamn.utils.masks import mask_to_rle

    left = band(slice(0, 50))
    ann = [{"instance_id": 1, "segmentation": mask_to_rle(left)}]
    records = [dict(image_id=f"v_x_f_1_e_{e}", video_id="x", frame_idx=1, instance_id=1,
                    query=f"q{e}", exp_id=str(e), annotator=a, height=100, width=100,
                    annotations=ann) for e, a in ((0, 0), (1, 0), (2, 1))]  # fmt: skip
    DatasetCatalog.register("jf_annotators", lambda: records)
    MetadataCatalog.get("jf_annotators").set(per_annotator=True)
    try:
        ev = JFEvaluator("jf_annotators", distributed=False)
        ev.reset()
        for r, m in zip(records, (left, np.zeros((100, 100), bool), left)):
            inst = Instances((100, 100))
            inst.pred_masks = torch.from_numpy(m)[None]
            inst.scores = torch.tensor([1.0])
            ev.process([{"image_id": r["image_id"]}], [{"instances": inst}])
        assert ev.evaluate()["jf"]["J"] == pytest.approx(75.0)
    finally:
        DatasetCatalog.remove("jf_annotators")
        MetadataCatalog.remove("jf_annotators")
