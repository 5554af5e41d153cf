"""``aamn.model_zoo`` as ``detectron2.model_zoo``: every config of the project is in it and in
MODEL_ZOO.md, its paths resolve, a checkpoint that is not there names the command that makes it,
and published weights (a URL) load through the same safe reader."""

import os
import re
import shutil
from dataclasses import replace

import pytest

from aamn import model_zoo
from modeling_helpers import vocab_file  # noqa: F401
from test_predictor import REPO, checkpoints  # noqa: F401
from test_weights_urls import cache, server  # noqa: F401


def test_every_config_has_an_entry_and_a_row():
    configs = sorted(
        os.path.relpath(os.path.join(d, f), os.path.join(REPO, "configs"))
        for d, _, files in os.walk(os.path.join(REPO, "configs"))
        for f in files
        if f.endswith(".yaml") and not f.startswith("Base-")
    )
    assert configs == sorted(model_zoo.ZOO)
    table = open(os.path.join(REPO, "MODEL_ZOO.md")).read()
    for config in configs:
        assert re.search(rf"^\| `{re.escape(config)}` \|", table, re.M), config
        assert os.path.isfile(model_zoo.get_config_file(config))
        assert model_zoo.get_config(config).MODEL.META_ARCHITECTURE


def test_only_the_mevis_aamn_unites_tubes():
    """MeViS's expressions may refer to several objects: its AAMN config unites the tubes scored
    within the matching loss's margin of the selected one; the configs of data sets of one
    referred actor (A2D Sentences, Ref-YouTube-VOS, the synthetic benchmark) segment one tube."""
    mevis = model_zoo.get_config("mevis/aamn_R101.yaml").MODEL.AAMN
    assert mevis.TUBE_UNION_MARGIN == mevis.MATCH_MARGIN >= 0
    for config in ("a2d_sentences/aamn_R101.yaml", "ref_youtube_vos/aamn_R101.yaml",
                   "synthetic/aamn.yaml"):  # fmt: skip
        assert model_zoo.get_config(config).MODEL.AAMN.TUBE_UNION_MARGIN < 0, config


def test_only_the_synthetic_shared_model_runs_its_box_head_in_bf16():
    """``MODEL.ROI_BOX_HEAD.INFERENCE_BF16`` was chosen on val for the synthetic shared model only
    (BENCHMARKS.md); the detector that writes proposal files, and every other config, keep
    float32."""
    assert model_zoo.get_config("synthetic/aamn.yaml").MODEL.ROI_BOX_HEAD.INFERENCE_BF16 is True
    for config in sorted(model_zoo.ZOO):
        if config != "synthetic/aamn.yaml":
            assert model_zoo.get_config(config).MODEL.ROI_BOX_HEAD.INFERENCE_BF16 is False, config


def test_a_checkpoint_not_trained_yet_names_its_command(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # the checkpoints are relative to the folder the tools run in
    with pytest.raises(FileNotFoundError, match=r"make main"):
        model_zoo.get_checkpoint("synthetic/aamn.yaml")
    with pytest.raises(KeyError, match="not in the model zoo"):
        model_zoo.get_config_file("synthetic/nope.yaml")


def test_trained_models_load_from_a_path_or_a_url(checkpoints, server, monkeypatch):  # noqa: F811
    import torch

    root, base = server
    cfg_path, weights = checkpoints["CMDy"]
    entry = model_zoo.ZOO["synthetic/cmdy.yaml"]
    # the main job's path (here: the test checkpoint), with the test's tiny config
    monkeypatch.setattr(model_zoo, "get_config_file", lambda config: cfg_path)
    monkeypatch.setitem(model_zoo.ZOO, "synthetic/cmdy.yaml", replace(entry, checkpoint=weights))
    local = model_zoo.get("synthetic/cmdy.yaml", trained=True)
    assert not local.training
    # published weights: a URL, fetched and read safely
    shutil.copy(weights, root / "cmdy_final.pth")
    published = replace(entry, checkpoint="unused.pth", url=f"{base}/cmdy_final.pth")
    monkeypatch.setitem(model_zoo.ZOO, "synthetic/cmdy.yaml", published)
    assert model_zoo.get_config("synthetic/cmdy.yaml", trained=True).MODEL.WEIGHTS.startswith(base)
    remote = model_zoo.get("synthetic/cmdy.yaml", trained=True)
    for a, b in zip(local.state_dict().values(), remote.state_dict().values()):
        assert torch.equal(a, b)
