"""The project's configs and their trained checkpoints, as ``detectron2.model_zoo`` offers
detectron2's::

    from aamn import model_zoo

    path = model_zoo.get_config_file("synthetic/aamn.yaml")
    cfg = model_zoo.get_config("synthetic/aamn.yaml", trained=True)  # MODEL.WEIGHTS set
    model = model_zoo.get("synthetic/aamn.yaml", trained=True)       # built, weights loaded

Every config under ``configs/`` (other than the ``Base-*`` files) has an entry of ``ZOO``: the data
it trains on, its backbone and schedule, the command that produces its checkpoint and where that
checkpoint is: the URL of published weights (fetched through detectron2's PathManager, see
``aamn.utils.io.local_weights_file``) or, for the synthetic benchmark, the path under the
repository that the main job (``make main``) or ``tools/benchmark.py --train`` writes.
MODEL_ZOO.md is the same table with the measured results.
"""

import os
from dataclasses import dataclass
from typing import Optional

__all__ = ["ZOO", "ZooEntry", "get", "get_checkpoint", "get_config", "get_config_file"]

# The configs, inside the package (``aamn/configs`` links the repository's ``configs/``, as
# detectron2's ``model_zoo/configs``).
CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


@dataclass(frozen=True)
class ZooEntry:
    """One config of the zoo: ``data`` and ``backbone`` in words, ``schedule``, the ``command``
    that trains it, ``checkpoint`` (the file that command writes, relative to the repository)
    and ``url`` (published weights, None when there are none)."""

    data: str
    backbone: str
    schedule: str
    command: str
    checkpoint: str
    url: Optional[str] = None


_TRAIN = "python tools/train_net.py --config-file configs/{} OUTPUT_DIR {}"
_BENCH = (
    "python tools/train_net.py --config-file configs/synthetic/{} SEED 0 "
    "OUTPUT_DIR output/benchmark/{}/seed0"
)


def _real(config, data, backbone, schedule):
    out = "output/" + os.path.splitext(config)[0]
    return ZooEntry(data, backbone, schedule, _TRAIN.format(config, out), out + "/model_final.pth")


# The real data sets' three systems: config name and backbone.
_SYSTEMS = (
    ("aamn_R101", "ResNet-101-FPN, two streams"),
    ("cmdy_R50", "ResNet-50 + 3-D conv"),
    ("dynamic_filter_R50", "ResNet-50 + 3-D conv, two streams"),
)


def _evaluation_only(folder: str, trained: str, data: str) -> dict:
    """The entries of a data set that is evaluation only (``folder``): each system's model of
    ``trained`` (its command and checkpoint)."""
    names = {"a2d_sentences": "A2D Sentences", "ref_youtube_vos": "Ref-YouTube-VOS"}
    return {
        f"{folder}/{name}.yaml": ZooEntry(
            data,
            backbone,
            f"the {names.get(trained, trained)} model",
            _TRAIN.format(f"{trained}/{name}.yaml", f"output/{trained}/{name}"),
            f"output/{trained}/{name}/model_final.pth",
        )
        for name, backbone in _SYSTEMS
    }


ZOO = {
    "synthetic/aamn.yaml": ZooEntry(
        "synthetic A2D layout (default size, seed 0)",
        "the proposal detector's tiny ResNet-FPN (shared, fine-tuned), Flow: tiny ResNet-FPN",
        "1,800 it x 8 clips, AdamW, from the trained synthetic/detector.yaml",
        "make main (tools/run_main_job.py)",
        "output/synthetic/aamn/model_final.pth",
    ),
    "synthetic/detector.yaml": ZooEntry(
        "synthetic A2D layout, annotated frames",
        "tiny ResNet-FPN Faster R-CNN",
        "1,500 it x 16 frames, AdamW",
        "make main (tools/run_main_job.py)",
        "output/synthetic/detector/model_final.pth",
    ),
    "synthetic/cmdy.yaml": ZooEntry(
        "synthetic A2D layout (default size, seed 0)",
        "tiny ResNet + 3-D conv, RGB",
        "2,200 it x 8 clips, AdamW",
        _BENCH.format("cmdy.yaml", "CMDy"),
        "output/benchmark/CMDy/seed0/model_final.pth",
    ),
    "synthetic/dynamic_filter.yaml": ZooEntry(
        "synthetic A2D layout (default size, seed 0)",
        "tiny ResNet + 3-D conv, RGB + Flow",
        "2,000 it x 8 clips, AdamW",
        _BENCH.format("dynamic_filter.yaml", "DynamicFilterSeg"),
        "output/benchmark/DynamicFilterSeg/seed0/model_final.pth",
    ),
    "synthetic/aamn_paper_vgg.yaml": _real(
        "synthetic/aamn_paper_vgg.yaml",
        "synthetic A2D layout",
        "VGG-16 (width x 0.125), the paper's layers",
        "as synthetic/aamn_separate.yaml",
    ),
    "synthetic/aamn_separate.yaml": _real(
        "synthetic/aamn_separate.yaml",
        "synthetic A2D layout (default size, seed 0)",
        "tiny ResNet-FPN, two streams; the separate detector's proposals",
        "1,800 it x 8 clips, AdamW",
    ),
    "synthetic/aamn_table_iv.yaml": _real(
        "synthetic/aamn_table_iv.yaml",
        "synthetic A2D layout",
        "tiny ResNet-FPN (the ablation tables' base)",
        "1,000 it x 8 clips, AdamW",
    ),
    "a2d_sentences/aamn_R101.yaml": _real(
        "a2d_sentences/aamn_R101.yaml",
        "A2D Sentences",
        "ResNet-101-FPN, two streams",
        "150k it",
    ),
    "a2d_sentences/aamn_paper.yaml": _real(
        "a2d_sentences/aamn_paper.yaml", "A2D Sentences", "VGG-16, two streams", "150k it, SGD"
    ),
    "a2d_sentences/detector_R101.yaml": _real(
        "a2d_sentences/detector_R101.yaml",
        "A2D Sentences, annotated frames",
        "ResNet-101-FPN Faster R-CNN",
        "18k it",
    ),
    "a2d_sentences/cmdy_R50.yaml": _real(
        "a2d_sentences/cmdy_R50.yaml", "A2D Sentences", "ResNet-50 + 3-D conv", "10 epochs"
    ),
    "a2d_sentences/dynamic_filter_R50.yaml": _real(
        "a2d_sentences/dynamic_filter_R50.yaml",
        "A2D Sentences",
        "ResNet-50 + 3-D conv, two streams",
        "15k it",
    ),
    **_evaluation_only(
        "jhmdb_sentences", "a2d_sentences", "A2D Sentences; J-HMDB Sentences is evaluation only"
    ),
    "ref_youtube_vos/detector_R101.yaml": _real(
        "ref_youtube_vos/detector_R101.yaml",
        "Ref-YouTube-VOS, annotated frames (class-agnostic)",
        "ResNet-101-FPN Faster R-CNN",
        "18k it",
    ),
    **{
        f"{data}/{name}.yaml": _real(f"{data}/{name}.yaml", text, backbone, "as A2D Sentences'")
        for data, text in (("ref_youtube_vos", "Ref-YouTube-VOS"), ("mevis", "MeViS"))
        for name, backbone in _SYSTEMS
    },
    **_evaluation_only(
        "ref_davis", "ref_youtube_vos", "Ref-YouTube-VOS; Ref-DAVIS17 is evaluation only (J&F)"
    ),
}


def _entry(config_path: str) -> ZooEntry:
    if config_path not in ZOO:
        raise KeyError(f"{config_path!r} is not in the model zoo; known: {', '.join(sorted(ZOO))}")
    return ZOO[config_path]


def get_config_file(config_path: str) -> str:
    """The absolute path of a zoo config, e.g. ``"synthetic/aamn.yaml"``."""
    _entry(config_path)
    path = os.path.join(CONFIGS, config_path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"The zoo's config {path} is missing from this checkout")
    return path


def get_checkpoint(config_path: str) -> str:
    """Where the trained weights of ``config_path`` are: their URL, else the local file the
    entry's command writes (relative to the folder it runs in, the repository's root).

    Raises:
        FileNotFoundError: neither published nor trained here, naming the command to run.
    """
    entry = _entry(config_path)
    if entry.url:
        return entry.url
    path = os.path.abspath(entry.checkpoint)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"No trained weights for {config_path}: none are published, and {path} does not "
            f"exist yet; train them with `{entry.command}`"
        )
    return path


def get_config(config_path: str, trained: bool = False):
    """The zoo config (``aamn.config.get_aamn_cfg``), with ``MODEL.WEIGHTS`` its trained
    checkpoint when ``trained``."""
    from .config import get_aamn_cfg

    opts = ["MODEL.WEIGHTS", get_checkpoint(config_path)] if trained else []
    return get_aamn_cfg(get_config_file(config_path), opts)


def get(config_path: str, trained: bool = False, device: Optional[str] = None):
    """The model of a zoo config, in eval mode: when ``trained``, with its weights loaded whole
    (``build_trained_model``); else initialised as a training starts, its vocabulary built from
    ``DATASETS.TRAIN`` into a temporary folder (never into the config's ``OUTPUT_DIR``)."""
    import tempfile

    from detectron2.modeling import build_model

    from .config import check_device
    from .modeling import resolve_vocabulary
    from .modeling.checkpoint import build_trained_model

    cfg = get_config(config_path, trained=trained)
    if device is not None:
        cfg.MODEL.DEVICE = device
    check_device(cfg)
    if trained:
        return build_trained_model(cfg)[0]
    cfg.OUTPUT_DIR = tempfile.mkdtemp(prefix="aamn-zoo-")
    resolve_vocabulary(cfg, build=True)
    return build_model(cfg).eval()
