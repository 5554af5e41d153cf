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


def test_current_numpy_and_pillow_work_with_detectron2(tmp_path):
    """No numpy<1.24 / Pillow<10 pin: the fallback build's removed aliases are replaced."""
    import importlib.util

    import numpy as np
    import PIL
    from detectron2.data import transforms as T

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(repo, "requirements", "constraints.txt")) as f:
        pins = [line.split("#")[0].strip().lower() for line in f]
    assert not [p for p in pins if p.startswith(("numpy", "pillow"))]
    from fixtures import load_script

    tool = load_script("tools/install_detectron2.py")
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "a.py").write_text(
        "x = np.zeros(2).astype(np.bool)\ny = np.int64(1) + np.int(2)\nz = np.bool_\n"
        "def f(interp=Image.LINEAR): return np.float32(np.float(1))\n"
    )
    assert tool.patch_removed_aliases(str(src)) == [str(src / "a.py")]
    assert (src / "a.py").read_text() == (
        "x = np.zeros(2).astype(bool)\ny = np.int64(1) + int(2)\nz = np.bool_\n"
        "def f(interp=Image.BILINEAR): return np.float32(float(1))\n"
    )
    assert tool.patch_removed_aliases(str(src)) == []  # idempotent
    # The installed detectron2 runs the patched code paths under the installed releases.
    assert int(np.__version__.split(".")[0]) >= 2 and int(PIL.__version__.split(".")[0]) >= 10
    img = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    out = T.ExtentTransform((0, 0, 30, 20), (10, 15)).apply_image(img)
    assert out.shape == (10, 15, 3)
    from detectron2.structures import BitMasks, PolygonMasks

    poly = PolygonMasks([[np.array([0.0, 0, 10, 0, 10, 10, 0, 10])]])
    assert BitMasks.from_polygon_masks(poly, 12, 12).tensor.sum() > 0
