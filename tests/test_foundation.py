"""The package skeleton: config keys, registration on import, the detectron2 fallback's _C
placeholder."""

import glob
import importlib
import os

import pytest
from detectron2.config import get_cfg

import aamn
from aamn import add_aamn_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def new_cfg():
    cfg = get_cfg()
    add_aamn_config(cfg)
    return cfg


def test_add_aamn_config_adds_keys_and_is_idempotent():
    cfg = get_cfg()
    assert "AAMN" not in cfg.MODEL
    add_aamn_config(cfg)
    assert cfg.INPUT.CLIP.NUM_PROPOSALS == 6 and cfg.INPUT.CLIP.HALF_LENGTH == 4
    cfg.INPUT.CLIP.NUM_PROPOSALS = 3
    add_aamn_config(cfg)  # a second call must not reset user values
    assert cfg.INPUT.CLIP.NUM_PROPOSALS == 3


def test_add_aamn_config_keeps_frozen_state():
    cfg = get_cfg()
    cfg.freeze()
    add_aamn_config(cfg)
    assert cfg.is_frozen() and "AAMN" in cfg.MODEL


@pytest.mark.parametrize(
    "path", sorted(glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True))
)
def test_every_shipped_config_merges(path):
    from aamn.config import get_aamn_cfg

    cfg = get_aamn_cfg(path)
    assert cfg.MODEL.META_ARCHITECTURE in ("AAMN", "DynamicFilterSeg", "CMDy", "GeneralizedRCNN")


def test_unknown_config_key_is_named(tmp_path):
    from aamn.config import ConfigError, get_aamn_cfg

    with pytest.raises(ConfigError, match="unknown config key MODEL.AAMN.NO_SUCH_KEY"):
        get_aamn_cfg(opts=["MODEL.AAMN.NO_SUCH_KEY", "1"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("MODEL:\n  AAMN:\n    NUM_PROPOSAL: 4\n")
    with pytest.raises(
        ConfigError, match=r"bad.yaml: unknown config key MODEL.AAMN.NUM_PROPOSAL\b"
    ):
        get_aamn_cfg(str(bad))
    with pytest.raises(ConfigError, match="does not exist"):
        get_aamn_cfg(str(tmp_path / "missing.yaml"))


def test_import_twice_is_harmless():
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import META_ARCH_REGISTRY

    names = set(DatasetCatalog.list())
    importlib.reload(aamn)
    for sub in ("aamn.data.datasets.builtin",):
        importlib.reload(importlib.import_module(sub))
    assert "AAMN" in META_ARCH_REGISTRY
    assert names <= set(DatasetCatalog.list())
    assert aamn.add_aamn_config is add_aamn_config or callable(aamn.add_aamn_config)


def test_standard_dataset_names_registered():
    from detectron2.data import DatasetCatalog

    for name in (
        "a2d_sentences_train",
        "a2d_sentences_test",
        "jhmdb_sentences_test",
        "synthetic_a2d_train",
        "synthetic_a2d_test",
        "synthetic_jhmdb_test",
    ):
        assert name in DatasetCatalog.list()


def test_c_placeholder_error_is_clear():
    import detectron2

    if not os.path.exists(os.path.join(os.path.dirname(detectron2.__file__), "_C.py")):
        pytest.skip("detectron2 was installed with its compiled ops")
    from detectron2 import _C

    assert _C.BUILT_WITHOUT_OPS
    with pytest.raises(ImportError, match="built without the C\\+\\+/CUDA ops"):
        _C.deform_conv_forward  # noqa: B018
    with pytest.raises(ImportError, match="roi_align_rotated_forward"):
        getattr(_C, "roi_align_rotated_forward")
    with pytest.raises(AttributeError):  # dunder look-ups (copy, pickle, inspect) stay normal
        _C.__wrapped__  # noqa: B018
