"""Untrusted files and bad input, in process: each case of docs/reliability.md ends in an error
naming the file or value, or in a documented behaviour with a warning naming it, and nothing in a
crafted file runs.

A crafted pickle here asks to call ``os.system`` with a command that would create a marker file;
each test checks the marker is absent after the refusal.
"""

import logging
import os
import pickle
import shutil
import uuid

import h5py
import numpy as np
import pytest
import torch
from detectron2.data import DatasetCatalog
from torch import nn

from aamn.data.datasets import register_a2d_sentences, register_jhmdb_sentences
from aamn.data.datasets.register_a2d_sentences import load_a2d_index, read_a2d_frame_h5
from aamn.data.flow import read_flow, write_video_flow
from aamn.data.proposals import load_proposals
from aamn.data.text import Vocabulary
from aamn.data.video import HEADER_SLACK, VideoReader, VideoStream, check_decoded_length
from aamn.evaluation.inference import check_queries
from aamn.modeling.checkpoint import (
    CheckpointFileError,
    IncompatibleCheckpointError,
    StreamCheckpointer,
)
from aamn.utils.safe_pickle import UnsafePickleError, safe_load
from fixtures import real_video_path, write_a2d_tree, write_jhmdb_tree

H5_DIR = os.path.join("text_annotations", "a2d_annotation_with_instances")


class _RunsCode:
    """Unpickling this calls os.system(command): what a crafted file does."""

    def __init__(self, marker):
        self.command = f"touch {marker}"

    def __reduce__(self):
        return (os.system, (self.command,))


def crafted_pickle(path, marker, wrap=lambda payload: payload):
    with open(path, "wb") as f:
        pickle.dump(wrap(_RunsCode(marker)), f)
    return path


@pytest.fixture(scope="module")
def a2d(tmp_path_factory):
    root = tmp_path_factory.mktemp("a2d")
    write_a2d_tree(str(root))
    return str(root)


def fresh_copy(root, tmp_path):
    out = os.path.join(tmp_path, "copy")
    shutil.copytree(root, out, ignore=shutil.ignore_patterns("cache"))
    return out


def load(root, split):
    name = f"rel_{uuid.uuid4().hex[:8]}"
    register_a2d_sentences(name, root, split)
    return DatasetCatalog.get(name)


def small_model(width=4):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, width, 3), nn.BatchNorm2d(width))


# ---------------------------------------------------------------------------- untrusted pickles
def test_safe_load_reads_plain_data_and_refuses_any_other_global(tmp_path):
    data = {"blobs": {"conv1_w": np.ones((2, 3), np.float32)}, "n": [1, 2.5, "x", (3,)]}
    for protocol in (2, 4, 5):
        path = tmp_path / f"plain{protocol}.pkl"
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=protocol)
        back = safe_load(path)
        np.testing.assert_array_equal(back["blobs"]["conv1_w"], data["blobs"]["conv1_w"])
        assert back["n"] == data["n"]
    marker = tmp_path / "ran"
    path = crafted_pickle(tmp_path / "evil.pkl", marker)
    with pytest.raises(UnsafePickleError, match=r"evil\.pkl.*(posix|os)\.system"):
        safe_load(path)
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps(data)[:40])
    with pytest.raises(ValueError, match=r"cut\.pkl.*truncated"):
        safe_load(tmp_path / "cut.pkl")


def test_model_zoo_pkl_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = crafted_pickle(
        tmp_path / "model_final_abc.pkl", marker, lambda p: {"model": {"w": p}, "__author__": "x"}
    )
    with pytest.raises(CheckpointFileError, match=r"model_final_abc\.pkl.*system"):
        StreamCheckpointer(small_model()).load(str(path))
    assert not marker.exists()


def test_model_zoo_pkl_of_numpy_arrays_loads(tmp_path):
    model = small_model()
    blobs = {k: v.numpy() + 1.0 for k, v in model.state_dict().items() if v.is_floating_point()}
    path = tmp_path / "zoo.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": blobs, "__author__": "Detectron2 Model Zoo"}, f, protocol=2)
    fresh = small_model()
    StreamCheckpointer(fresh).load(str(path))
    torch.testing.assert_close(fresh[0].weight, torch.from_numpy(blobs["0.weight"]))


def test_pth_that_runs_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"model": {"w": _RunsCode(marker)}}, path)
    with pytest.raises(CheckpointFileError, match=r"evil\.pth.*weights_only"):
        StreamCheckpointer(small_model()).load(str(path))
    assert not marker.exists()


def test_truncated_and_foreign_checkpoints_name_the_file(tmp_path):
    model = small_model()
    StreamCheckpointer(model, str(tmp_path)).save("model_final")
    data = (tmp_path / "model_final.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFileError, match=r"cut\.pth.*truncated"):
        StreamCheckpointer(small_model()).load(str(tmp_path / "cut.pth"))
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointFileError, match=r"list\.pth holds a list"):
        StreamCheckpointer(small_model()).load(str(tmp_path / "list.pth"))


def test_strict_loading_refuses_a_partial_checkpoint_training_init_does_not(tmp_path, caplog):
    StreamCheckpointer(small_model(width=4), str(tmp_path)).save("narrow")
    with pytest.raises(
        IncompatibleCheckpointError, match=r"narrow\.pth.*of another shape.*0\.weight"
    ):
        StreamCheckpointer(small_model(width=6), strict=True).load(str(tmp_path / "narrow.pth"))
    wider = nn.Sequential(*small_model(), nn.Conv2d(4, 2, 1))
    with pytest.raises(IncompatibleCheckpointError, match=r"missing from the file.*2\.weight"):
        StreamCheckpointer(wider, strict=True).load(str(tmp_path / "narrow.pth"))
    # Starting a training from other weights: what fits loads, the rest stays (detectron2's way).
    before = wider[2].weight.clone()
    StreamCheckpointer(wider).load(str(tmp_path / "narrow.pth"))
    torch.testing.assert_close(wider[2].weight, before)
    torch.testing.assert_close(wider[0].weight, small_model()[0].weight)


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    model = small_model()
    ckpt = StreamCheckpointer(model, str(tmp_path))
    ckpt.save("model_0000001")
    good = (tmp_path / "model_0000001.pth").read_bytes()

    def dies_half_way(obj, f):
        with open(f, "wb") as out:
            out.write(b"half")
        raise KeyboardInterrupt  # the process is stopped while writing

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000001")
    with pytest.raises(KeyboardInterrupt):
        ckpt.save("model_0000003")
    assert (tmp_path / "model_0000001.pth").read_bytes() == good
    assert not (tmp_path / "model_0000003.pth").exists()
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000001.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0000001.pth"]


def test_resume_falls_back_from_a_truncated_checkpoint_or_names_every_one(tmp_path, caplog):
    model = small_model()
    ckpt = StreamCheckpointer(model, str(tmp_path))
    for it in (1, 3):
        with torch.no_grad():
            model[0].weight.fill_(it)
        ckpt.save(f"model_{it:07d}", iteration=it)
    last = tmp_path / "model_0000003.pth"
    last.write_bytes(last.read_bytes()[:100])
    fresh = small_model()
    with caplog.at_level(logging.WARNING):
        extra = StreamCheckpointer(fresh, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1 and float(fresh[0].weight.detach()[0, 0, 0, 0]) == 1.0
    assert "model_0000003.pth" in caplog.text and "newest intact" in caplog.text
    first = tmp_path / "model_0000001.pth"
    first.write_bytes(first.read_bytes()[:100])
    with pytest.raises(CheckpointFileError, match=r"no intact checkpoint.*0000003.*0000001"):
        StreamCheckpointer(small_model(), str(tmp_path)).resume_or_load("", resume=True)


def test_resume_is_strict(tmp_path):
    StreamCheckpointer(small_model(width=4), str(tmp_path)).save("model_0000001")
    with pytest.raises(IncompatibleCheckpointError, match=r"model_0000001\.pth"):
        StreamCheckpointer(small_model(width=6), str(tmp_path)).resume_or_load("", resume=True)


# ---------------------------------------------------------------------------- proposals, caches
def test_proposal_file_that_runs_code_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = crafted_pickle(
        tmp_path / "p.pkl", marker, lambda p: {"ids": [p], "boxes": [], "objectness_logits": []}
    )
    with pytest.raises(UnsafePickleError, match=r"p\.pkl"):
        load_proposals(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "boxes,scores,match",
    [
        ([np.zeros((2, 4))], [np.zeros(3)], "2 boxes and 3 scores"),
        ([np.full((1, 4), np.nan)], [np.zeros(1)], "not finite"),
        ([np.zeros((2, 3))], [np.zeros(2)], r"not \(N, 4\) boxes"),
        ([np.zeros((1, 4)), np.zeros((1, 4))], [np.zeros(1)], "differ in length"),
    ],
)
def test_malformed_proposals_name_the_file_and_frame(tmp_path, boxes, scores, match):
    path = tmp_path / "p.pkl"
    with open(path, "wb") as f:
        pickle.dump({"ids": ["v/00001"], "boxes": boxes, "objectness_logits": scores}, f)
    with pytest.raises(ValueError, match=rf"p\.pkl.*{match}"):
        load_proposals(path)


def test_crafted_index_cache_is_rebuilt_without_running(a2d, tmp_path, caplog):
    root = fresh_copy(a2d, tmp_path)
    expected = load_a2d_index(root, "train")["samples"]
    (cache,) = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(root, "cache")) for f in fs]
    marker = tmp_path / "ran"
    crafted_pickle(cache, marker)
    with caplog.at_level(logging.WARNING):
        assert load_a2d_index(root, "train")["samples"] == expected
    assert not marker.exists()
    assert "Cannot read the index cache" in caplog.text and "rebuilding" in caplog.text


# ---------------------------------------------------------------------------- annotation files
def test_damaged_h5_body_names_the_file(a2d, tmp_path):
    root = fresh_copy(a2d, tmp_path)
    path = os.path.join(root, H5_DIR, "vidA", "00007.h5")
    data = bytearray(open(path, "rb").read())
    # Damage the file's inside (not its first bytes: h5py opens it, then fails deeper).
    for start in range(len(data) // 10, len(data) // 2, 97):
        data[start : start + 8] = b"\xff" * 8
    open(path, "wb").write(bytes(data))
    with pytest.raises(IOError, match=r"vidA.00007\.h5"):
        read_a2d_frame_h5(path)
    with pytest.raises(IOError, match=r"vidA.00007\.h5"):
        load(root, "train")


def test_mask_values_a_mask_cannot_have_name_the_file(tmp_path):
    path = str(tmp_path / "00001.h5")
    with h5py.File(path, "w") as f:
        f["instance"] = np.array([1.0])
        f["reMask"] = np.full((6, 4), 7, np.uint8)
    with pytest.raises(ValueError, match=r"00001\.h5.*damaged"):
        read_a2d_frame_h5(path)


def test_missing_h5_files_are_reported_with_the_folder(a2d, tmp_path, caplog):
    root = fresh_copy(a2d, tmp_path)
    os.remove(os.path.join(root, H5_DIR, "vidA", "00007.h5"))
    with caplog.at_level(logging.WARNING):
        records = load(root, "train")
    assert not any(r["video_id"] == "vidA" and r["frame_idx"] == 7 for r in records)
    assert "fewer .h5 files than" in caplog.text and os.path.join(H5_DIR, "vidA") in caplog.text
    assert "holds 1 of 2" in caplog.text


def test_rows_with_an_empty_query_are_dropped_with_their_line(a2d, tmp_path, caplog):
    root = fresh_copy(a2d, tmp_path)
    path = os.path.join(root, "text_annotations", "a2d_annotation.txt")
    with open(path, "a") as f:
        f.write("vidA,1,\nvidA,1,  ?! \n")
    with caplog.at_level(logging.WARNING):
        records = load(root, "train")
    assert all(r["query"].strip() for r in records)
    assert "a2d_annotation.txt: dropped 2 row(s) whose query has no word" in caplog.text
    assert "line(s) 11, 12" in caplog.text


def test_annotation_text_that_is_not_utf8_names_the_file(a2d, tmp_path):
    root = fresh_copy(a2d, tmp_path)
    path = os.path.join(root, "text_annotations", "a2d_annotation.txt")
    with open(path, "ab") as f:
        f.write(b"vidA,1,a caf\xe9 latin-1 query\n")
    with pytest.raises(ValueError, match=r"a2d_annotation\.txt: not UTF-8"):
        load(root, "train")


def test_jhmdb_rows_with_an_empty_query_are_dropped(tmp_path, caplog):
    write_jhmdb_tree(str(tmp_path))
    with open(tmp_path / "jhmdb_annotation.txt", "a") as f:
        f.write('v_x_1,""\n')
    name = f"rel_jhmdb_{uuid.uuid4().hex[:8]}"
    register_jhmdb_sentences(name, str(tmp_path))
    with caplog.at_level(logging.WARNING):
        records = DatasetCatalog.get(name)
    assert records and all(r["query"] for r in records)
    assert "jhmdb_annotation.txt: dropped 1 row(s) whose query has no word" in caplog.text


def test_queries_checked_before_a_run(caplog):
    vocab = Vocabulary.build([["man", "walking"]])
    records = [{"query": "a man walking"}, {"query": "zebra galloping"}, {"query": "Zebra"}]
    with caplog.at_level(logging.WARNING):
        assert check_queries(records, "ds", vocab) == 2
    assert "ds: 2 of 3 queries have no word of the model's" in caplog.text
    assert "'zebra galloping'" in caplog.text
    with pytest.raises(ValueError, match=r"ds: the query of vidQ frame 4 \(' , '\) has no word"):
        check_queries(records + [{"query": " , ", "video_id": "vidQ", "frame_idx": 4}], "ds")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        check_queries(records, "ds", max_length=2)  # the models read "a man", "zebra galloping"
    assert "ds: 1 of 3 queries have more than 2 tokens (INPUT.QUERY_MAX_LENGTH)" in caplog.text


# ---------------------------------------------------------------------------- videos, flow
def test_video_damaged_half_way_is_an_error_naming_the_frame(tmp_path):
    data = bytearray(open(real_video_path(), "rb").read())
    n = len(data)
    data[int(n * 0.55) : int(n * 0.9)] = np.random.default_rng(0).bytes(
        int(n * 0.9) - int(n * 0.55)
    )
    path = str(tmp_path / "damaged.mp4")
    open(path, "wb").write(bytes(data))
    reader = VideoReader(path)
    assert len(reader.read([1, 2, 30])) == 3  # the first half decodes
    with pytest.raises(IOError, match=r"damaged\.mp4 is damaged.*120 frames.*stops at frame"):
        reader.read([110])
    with pytest.raises(IOError, match=r"damaged\.mp4 is damaged"):
        for _ in VideoStream(path):
            pass


def test_a_header_that_over_counts_by_a_frame_or_two_is_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        check_decoded_length("v.mp4", 50, 50 - HEADER_SLACK)
    assert "v.mp4: the header gives 50 frames" in caplog.text
    with pytest.raises(IOError, match="v.mp4 is damaged"):
        check_decoded_length("v.mp4", 50, 49 - HEADER_SLACK)


def test_flow_read_with_another_bound_than_written_is_an_error(tmp_path):
    folder = str(tmp_path / "flow" / "vid")
    write_video_flow(folder, np.zeros((3, 8, 10, 2), np.float32), bound=20)
    assert read_flow(folder, [1, 3], 20).shape == (2, 8, 10, 3)
    with pytest.raises(ValueError, match=r"written with bound 20.0 px.*INPUT.FLOW.BOUND 15"):
        read_flow(folder, [1], 15)
    os.remove(os.path.join(folder, "flow.json"))
    with pytest.raises(FileNotFoundError, match=r"No complete flow cache in .*vid.*prepare_flow"):
        read_flow(folder, [1], 20)


# ---------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "text,opts,match",
    [
        ("MODEL:\n  META_ARCHITECTURE: [unclosed\n", (), r"bad\.yaml is not valid YAML.*line 2"),
        ("_BASE_: nowhere.yaml\n", (), r"bad\.yaml: cannot read .*nowhere\.yaml"),
        ("SOLVER:\n  MAX_ITER: abc\n", (), r"bad\.yaml: Type mismatch.*SOLVER\.MAX_ITER"),
        ("", (), r"bad\.yaml: not a YAML mapping of config keys"),
        (
            "SOLVER:\n  MAX_ITER: 3\n",
            ("SOLVER.MAX_ITER",),
            r"override \['SOLVER\.MAX_ITER'\].*pairs",
        ),
    ],
)
def test_config_files_and_overrides_that_cannot_be_read_name_themselves(
    tmp_path, text, opts, match
):
    from aamn.config import ConfigError, get_aamn_cfg

    bad = tmp_path / "bad.yaml"
    bad.write_text(text)
    with pytest.raises(ConfigError, match=match):
        get_aamn_cfg(str(bad), list(opts))


def test_every_case_of_the_table_names_a_test_that_exists():
    """docs/reliability.md: every row of the case table names a test, and the test exists."""
    import re

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "docs", "reliability.md")) as f:
        rows = [line for line in f if re.match(r"^\| \d+ \|", line)]
    assert len(rows) >= 50
    for row in rows:
        (ref,) = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", row) or [(None, None)]
        assert ref[0] is not None, f"no test named in: {row}"
        path, name = ref
        with open(os.path.join(repo, path)) as f:
            assert re.search(rf"^def {name}\(", f.read(), re.M), f"{path}::{name} does not exist"


def test_flow_writer_removes_what_killed_writers_left(tmp_path):
    import socket

    host = socket.gethostname().replace("-", "_")
    parent = tmp_path / "flow"
    dead = parent / f".vid.tmp-{host}-99999999-0000abcd"  # a killed writer of this machine
    older = parent / ".vid.tmp-1234abcd"  # the earlier naming (no host / process id)
    live = parent / f".vid.tmp-{host}-{os.getpid()}-0000abcd"  # a writer still running
    other = parent / ".vid.tmp-elsewhere-99999999-0000abcd"  # another machine's (shards)
    for d in (dead, older, live, other):
        d.mkdir(parents=True)
        (d / "00001.png").write_bytes(b"partial")
    write_video_flow(str(parent / "vid"), np.zeros((2, 4, 4, 2), np.float32), bound=20)
    assert not dead.exists() and not older.exists() and live.exists() and other.exists()
    assert sorted(os.listdir(parent / "vid")) == ["00001.png", "00002.png", "flow.json"]
