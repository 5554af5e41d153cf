"""Weights from anywhere detectron2 takes them: ``MODEL.WEIGHTS`` (and the detector's) as a local
path, ``file://``, ``http(s)://`` or ``detectron2://``, fetched through detectron2's PathManager
into its cache.  A server on 127.0.0.1 serves the files; nothing else is contacted."""

import functools
import http.server
import os
import pickle
import shutil
import threading

import numpy as np
import pytest

from aamn.engine import VideoPredictor
from aamn.modeling.checkpoint import CheckpointFileError, StreamCheckpointer
from aamn.utils.io import url_cache_path
from aamn.utils.safe_pickle import UnsafePickleError  # noqa: F401

from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import _cfg, checkpoints, video  # noqa: F401


@pytest.fixture
def server(tmp_path):
    """``(root folder, base URL)`` of an HTTP server on 127.0.0.1 serving ``root``."""
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    """A fresh PathManager cache per test."""
    from detectron2.utils.file_io import PathManager

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))
    for handler in PathManager._path_handlers.values():
        if hasattr(handler, "cache_map"):
            monkeypatch.setattr(handler, "cache_map", {})
    return tmp_path / "cache"


def _results(predictor, path):
    """Every frame's mask and score, for two queries."""
    out = predictor.predict(path, ["a man is running", "red dog jumping"])
    return [(r["mask"], r["score"]) for f in out for r in f["queries"]]


def _same(a, b):
    return len(a) == len(b) == 46 and all(
        np.array_equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b)
    )


def test_weights_from_a_url_give_the_local_files_results(server, checkpoints, video, cache):
    root, base = server
    path, _ = video
    _, weights = checkpoints["CMDy"]
    shutil.copy(weights, root / "cmdy.pth")
    local = _results(VideoPredictor(_cfg(checkpoints, "CMDy")), path)
    assert len({score for _, score in local}) > 1  # a model whose results can differ
    for url in (f"{base}/cmdy.pth", "file://" + weights):
        fetched = _results(VideoPredictor(_cfg(checkpoints, "CMDy", "MODEL.WEIGHTS", url)), path)
        assert _same(local, fetched)
    assert (cache / "cmdy.pth").read_bytes() == open(weights, "rb").read()
    # cached: loads again with the server gone (no network)
    os.remove(root / "cmdy.pth")
    again = VideoPredictor(_cfg(checkpoints, "CMDy", "MODEL.WEIGHTS", f"{base}/cmdy.pth"))
    assert _same(local, _results(again, path))


def test_a_detectron2_url_already_cached_loads_without_network(checkpoints, cache):
    _, weights = checkpoints["CMDy"]
    url = "detectron2://AAMN/synthetic/cmdy/model_final.pth"
    target = url_cache_path(url)
    assert target == str(cache / "detectron2" / "AAMN" / "synthetic" / "cmdy" / "model_final.pth")
    os.makedirs(os.path.dirname(target))
    shutil.copy(weights, target)
    predictor = VideoPredictor(_cfg(checkpoints, "CMDy", "MODEL.WEIGHTS", url))
    assert predictor.model is not None


def test_a_hostile_pickle_from_a_url_is_refused(server, tmp_path):
    root, base = server
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (root / "model_final_evil.pkl").write_bytes(pickle.dumps({"model": {"w": Evil()}}))
    import torch

    with pytest.raises(CheckpointFileError, match=r"model_final_evil\.pkl.*system"):
        StreamCheckpointer(torch.nn.Linear(2, 2)).load(f"{base}/model_final_evil.pkl")
    assert not marker.exists()


def test_without_network_the_error_names_the_url_and_the_cache_path(server, cache):
    _, base = server
    url = f"{base}/nowhere/model.pth"  # the server answers 404, as an unreachable host would fail
    import torch

    with pytest.raises(CheckpointFileError) as e:
        StreamCheckpointer(torch.nn.Linear(2, 2)).load(url)
    assert url in str(e.value) and str(cache / "nowhere" / "model.pth") in str(e.value)


# ---------------------------------------------------------------------- a self-contained model
def _with_detector_record(checkpoints, tmp_path, weights=None):
    """The AAMN checkpoint of ``checkpoints`` rewritten with the record of the test detector."""
    import torch

    from aamn.config import get_aamn_cfg
    from aamn.data.proposals import detector_record
    from aamn.engine.proposal_detector import PROPOSAL_DETECTOR_KEY

    det_cfg_path, det_weights = checkpoints["detector"]
    det_cfg = get_aamn_cfg(det_cfg_path, ["MODEL.WEIGHTS", weights or det_weights])
    data = torch.load(checkpoints["AAMN"][1], weights_only=True)
    data[PROPOSAL_DETECTOR_KEY] = dict(detector_record(det_cfg, weights or det_weights), topk=20)
    path = tmp_path / "aamn_with_detector.pth"
    torch.save(data, path)
    return str(path)


def test_a_checkpoint_that_names_its_detector_needs_nothing_else(
    checkpoints, video, tmp_path, caplog
):
    import logging

    from aamn.engine import ProposalDetector

    path, _ = video
    weights = _with_detector_record(checkpoints, tmp_path)
    explicit = VideoPredictor(
        _cfg(checkpoints, "AAMN"), detector=ProposalDetector(_cfg(checkpoints, "detector"))
    )
    alone = VideoPredictor(_cfg(checkpoints, "AAMN", "MODEL.WEIGHTS", weights))
    a, b = _results(explicit, path), _results(alone, path)
    assert _same(a, b)
    # the flags still override: another detector file (other weights) gets a warning naming both
    import torch

    other = tmp_path / "other_detector.pth"
    state = torch.load(checkpoints["detector"][1], weights_only=True)
    state["model"] = {
        k: v + 0.01 if v.is_floating_point() else v for k, v in state["model"].items()
    }
    torch.save(state, other)
    with caplog.at_level(logging.WARNING, logger="aamn.engine.predictor"):
        VideoPredictor(
            _cfg(checkpoints, "AAMN", "MODEL.WEIGHTS", weights), detector_weights=str(other)
        )
    assert f"weights {other} have SHA-256" in caplog.text and "were trained on" not in caplog.text
    assert "was trained on proposals of weights with SHA-256" in caplog.text
    # a recorded detector file that is gone is named, with the flag to give
    gone = tmp_path / "gone.pth"
    shutil.copy(checkpoints["detector"][1], gone)
    moved = _with_detector_record(checkpoints, tmp_path, weights=str(gone))
    os.remove(gone)
    with pytest.raises(FileNotFoundError, match=r"gone\.pth are not found.*--detector-weights"):
        VideoPredictor(_cfg(checkpoints, "AAMN", "MODEL.WEIGHTS", moved))


def test_the_trainer_records_the_detector_of_its_proposal_files(checkpoints, tmp_path):
    from aamn.config import get_aamn_cfg
    from aamn.data.proposals import detector_record, save_proposals
    from aamn.engine.trainer import training_proposal_detector

    det_cfg_path, det_weights = checkpoints["detector"]
    record = detector_record(
        get_aamn_cfg(det_cfg_path, ["MODEL.WEIGHTS", det_weights]), det_weights
    )
    pfile = str(tmp_path / "train.pkl")
    save_proposals(pfile, ["v/00001"], [np.zeros((1, 4), np.float32)], [[0.0]], detector=record)
    cfg = get_aamn_cfg(
        opts=["DATASETS.TRAIN", "('x',)", "DATASETS.PROPOSAL_FILES_TRAIN", f"('{pfile}',)"]
    )
    assert training_proposal_detector(cfg) == record
    assert (
        record["sha256"] == __import__("hashlib").sha256(open(det_weights, "rb").read()).hexdigest()
    )
    save_proposals(pfile, ["v/00001"], [np.zeros((1, 4), np.float32)], [[0.0]])
    assert training_proposal_detector(cfg) is None


@pytest.mark.parametrize(
    "path", ["a/../../escaped/aamn.pth", "a/%2e%2e/%2E%2E/escaped/aamn.pth", "a/..%2f..%2fx.pth"]
)
def test_a_url_never_writes_outside_the_cache(server, cache, tmp_path, path):
    """``..`` in a weights URL (plain or percent-encoded) is refused before anything is fetched;
    nothing is planted anywhere, whatever the file's name."""
    root, base = server
    (root / "escaped").mkdir()
    (root / "escaped" / "aamn.pth").write_bytes(b"x")
    import torch

    before = set(os.listdir(tmp_path))
    with pytest.raises(CheckpointFileError, match=r"has the component '\.\.'"):
        StreamCheckpointer(torch.nn.Linear(2, 2)).load(f"{base}/{path}")
    assert set(os.listdir(tmp_path)) == before and not os.path.exists(cache)
    with pytest.raises(CheckpointFileError, match="names no file"):
        StreamCheckpointer(torch.nn.Linear(2, 2)).load(f"{base}/")


def _cut_server(body: bytes, announce: int):
    """A server on 127.0.0.1 that answers every GET with the first 40 bytes of ``body`` and closes
    the connection; ``announce``: the Content-Length it sends (0: none)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            if announce:
                self.send_header("Content-Length", str(announce))
            self.end_headers()
            self.wfile.write(body[:40])
            self.wfile.flush()
            self.close_connection = True

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def test_a_transfer_cut_short_is_never_cached_as_whole(cache, tmp_path):
    import torch

    torch.save({"model": {"weight": torch.ones(2, 2), "bias": torch.ones(2)}}, tmp_path / "w.pth")
    body = (tmp_path / "w.pth").read_bytes()
    # announced length not reached: an error, nothing cached
    httpd, base = _cut_server(body, len(body))
    try:
        with pytest.raises(CheckpointFileError, match=f"cut short \\(40 of {len(body)} bytes\\)"):
            StreamCheckpointer(torch.nn.Linear(2, 2)).load(f"{base}/m/w.pth")
        assert not os.path.exists(cache / "m" / "w.pth")
    finally:
        httpd.shutdown()
        httpd.server_close()
    # no length announced: the cut file is cached, refused when read, and removed with a word
    httpd, base = _cut_server(body, 0)
    try:
        with pytest.raises(CheckpointFileError, match="is removed, so that the next run fetches"):
            StreamCheckpointer(torch.nn.Linear(2, 2)).load(f"{base}/m/w.pth")
        assert not os.path.exists(cache / "m" / "w.pth")
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_checkpoint_in_the_legacy_format_loads(tmp_path):
    import torch

    from aamn.modeling.checkpoint import read_weights_file
    from aamn.modeling.vocabulary import checkpoint_vocabulary

    path = tmp_path / "legacy.pth"
    data = {"model": {"w": torch.arange(3.0)}, "vocabulary": ["<pad>", "<unk>", "man"]}
    torch.save(data, path, _use_new_zipfile_serialization=False)  # torch < 1.6's format
    assert torch.equal(read_weights_file(str(path))["model"]["w"], torch.arange(3.0))
    assert "man" in checkpoint_vocabulary(str(path))  # read without memory-mapping


def test_a_damaged_file_placed_in_the_cache_by_hand_is_named_not_removed(server, cache):
    """Only what this process fetched is removed; a file the user placed in the cache (the
    offline way) stays, and the error says to delete or replace it."""
    import torch

    _, base = server
    url = f"{base}/hand/model.pth"
    local = cache / "hand" / "model.pth"
    local.parent.mkdir(parents=True)
    local.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointFileError, match="delete it .* or place the whole file there"):
        StreamCheckpointer(torch.nn.Linear(2, 2)).load(url)
    assert local.read_bytes() == b"not a checkpoint"
