"""State-dict conversions applied when a weights file is loaded into a model: pure functions from
a state dict to a state dict, each tested alone, applied in the order of ``CONVERSIONS`` by
``convert_checkpoint`` (``StreamCheckpointer._load_model`` calls it; the file I/O stays there).

Each conversion is ``fn(weights, target) -> weights``: ``weights`` the file's ``{name: tensor or
array}``, ``target`` a ``Target`` describing the model.  A conversion that does not apply returns
the weights unchanged; none modifies its input.

1. ``vgg16_names``: a VGG-16 file (torchvision, Caffe or a detectron2 Faster R-CNN VGG-16) given to
   a model with a VGG-16 RGB stream: its convolutions under ``backbone.*`` and its fc6 / fc7 under
   the model's two-FC heads (``aamn.modeling.backbone.vgg``);
2. ``model_zoo_names``: the file asks for detectron2's name-matching heuristics (a Caffe2 /
   Detectron or pycls file): its names matched to the RGB backbone's
   (``align_and_update_state_dicts``);
3. ``strip_module_prefix``: the ``module.`` prefix a ``DistributedDataParallel``'s state dict has;
4. ``rename_prefixes``: the model's ``checkpoint_renames`` (a prefix a file may use -> the model's
   prefix), for names the model does not have;
5. ``fpn_bottom_up``: the ResNet of a file whose backbone is an FPN (``backbone.bottom_up.*``,
   e.g. the proposal detector's) given to a model whose RGB backbone is the plain ResNet
   (``backbone.res2.*``, the comparison systems'), and the other way round;
6. ``rgb_to_flow``: a file without Flow-stream weights given to a two-stream model: every
   ``backbone.*`` weight copied to ``flow_backbone.*`` (the flow input has 3 channels like RGB).
"""

import logging
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

__all__ = [
    "CONVERSIONS",
    "FLOW_PREFIX",
    "RGB_PREFIX",
    "Target",
    "convert_checkpoint",
    "fpn_bottom_up",
    "model_zoo_names",
    "rename_prefixes",
    "rgb_to_flow",
    "strip_module_prefix",
    "vgg16_names",
]

logger = logging.getLogger(__name__)

RGB_PREFIX = "backbone."
FLOW_PREFIX = "flow_backbone."


@dataclass
class Target:
    """What the conversions need to know of the model and of the file.

    Attributes:
        state: the model's state dict (names and shapes).
        vgg16_backbone: the model's RGB stream is a VGG-16 (``aamn.modeling.backbone.vgg.VGG16``).
        vgg16_heads: prefixes of the model's two-FC heads that take fc6 / fc7.
        renames: the model's ``checkpoint_renames`` (file prefix -> model prefix).
        init_flow_from_rgb: copy ``backbone.*`` to ``flow_backbone.*`` when the file has none.
        matching_heuristics: the file asks for detectron2's name matching (model-zoo files).
        caffe2: the file is a Caffe2 / Detectron one (its name conversions).
    """

    state: Mapping
    vgg16_backbone: bool = False
    vgg16_heads: Sequence[str] = ()
    renames: Mapping[str, str] = field(default_factory=dict)
    init_flow_from_rgb: bool = True
    matching_heuristics: bool = False
    caffe2: bool = False


def vgg16_names(weights: Dict, target: Target) -> Dict:
    """A VGG-16 file's tensors under the model's names (``vgg16_weights``), when the model's RGB
    stream is a VGG-16; other files unchanged."""
    from .backbone.vgg import is_vgg16_file, vgg16_weights

    kind = is_vgg16_file(weights)
    if kind is None or not target.vgg16_backbone:
        return weights
    heads = [h for h in target.vgg16_heads if f"{h}fc1.weight" in target.state]
    logger.info(
        "Loaded a VGG-16 file (%s names) into the RGB backbone and fc6 / fc7 of %s",
        kind,
        heads or "no head",
    )
    return vgg16_weights(weights, RGB_PREFIX, heads)


def model_zoo_names(weights: Dict, target: Target) -> Dict:
    """detectron2's name matching of a model-zoo file onto the RGB backbone (its Caffe2
    conversions for a Caffe2 file), when the file asks for it."""
    if not target.matching_heuristics:
        return weights
    import numpy as np
    import torch
    from detectron2.checkpoint.c2_model_loading import align_and_update_state_dicts

    tensors = {
        k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in weights.items()
    }
    rgb_state = {k: v for k, v in target.state.items() if k.startswith(RGB_PREFIX)}
    return align_and_update_state_dicts(rgb_state, tensors, c2_conversion=target.caffe2)


def strip_module_prefix(weights: Dict, target: Target) -> Dict:
    """Names without the ``module.`` prefix of a ``DistributedDataParallel`` state dict."""
    return {k[len("module.") :] if k.startswith("module.") else k: v for k, v in weights.items()}


def rename_prefixes(weights: Dict, target: Target) -> Dict:
    """Each name the model does not have and that starts with a prefix of ``target.renames``,
    under the model's prefix instead."""
    out, renamed = {}, 0
    for k, v in weights.items():
        for old, new in target.renames.items():
            if k.startswith(old) and k not in target.state:
                k, renamed = new + k[len(old) :], renamed + 1
                break
        out[k] = v
    if renamed:
        logger.info("Renamed %d parameters by the model's checkpoint_renames", renamed)
    return out


BOTTOM_UP = RGB_PREFIX + "bottom_up."


def fpn_bottom_up(weights: Dict, target: Target) -> Dict:
    """The ResNet of an FPN file (``backbone.bottom_up.X``) under ``backbone.X`` for a model whose
    RGB backbone is a plain ResNet, or a plain ResNet file's ``backbone.X`` under
    ``backbone.bottom_up.X`` for a model with an FPN; only names the model has and the file lacks
    are added (the FPN's own layers stay unmatched and are listed by the loader)."""
    model_fpn = any(k.startswith(BOTTOM_UP) for k in target.state)
    file_fpn = any(k.startswith(BOTTOM_UP) for k in weights)
    if model_fpn == file_fpn:
        return weights
    if file_fpn:  # backbone.bottom_up.X -> backbone.X
        moved = {RGB_PREFIX + k[len(BOTTOM_UP) :]: k for k in weights if k.startswith(BOTTOM_UP)}
    else:  # backbone.X -> backbone.bottom_up.X
        moved = {BOTTOM_UP + k[len(RGB_PREFIX) :]: k for k in weights if k.startswith(RGB_PREFIX)}
    moved = {new: old for new, old in moved.items() if new in target.state and new not in weights}
    if not moved:
        return weights
    out = {k: v for k, v in weights.items() if k not in moved.values()}
    out.update({new: weights[old] for new, old in moved.items()})
    logger.info(
        "Loaded %d ResNet weights of the file's %s backbone into the model's %s backbone",
        len(moved),
        "FPN" if file_fpn else "plain",
        "plain" if file_fpn else "FPN",
    )
    return out


def rgb_to_flow(weights: Dict, target: Target) -> Dict:
    """A two-stream model given a file without Flow-stream weights: every ``backbone.*`` weight
    also under ``flow_backbone.*`` (unless ``target.init_flow_from_rgb`` is False)."""
    has_flow_model = any(k.startswith(FLOW_PREFIX) for k in target.state)
    if not (target.init_flow_from_rgb and has_flow_model):
        return weights
    if any(k.startswith(FLOW_PREFIX) for k in weights):
        return weights
    out = dict(weights)
    copied = [k for k in weights if k.startswith(RGB_PREFIX)]
    for k in copied:
        out[FLOW_PREFIX + k[len(RGB_PREFIX) :]] = weights[k]
    logger.info(
        "Initialised the Flow backbone with %d RGB backbone weights of the file", len(copied)
    )
    return out


# The order matters: names are matched first (VGG-16, model zoo), then normalised, then copied.
CONVERSIONS: List[Tuple[str, Callable[[Dict, Target], Dict]]] = [
    ("vgg16_names", vgg16_names),
    ("model_zoo_names", model_zoo_names),
    ("strip_module_prefix", strip_module_prefix),
    ("rename_prefixes", rename_prefixes),
    ("fpn_bottom_up", fpn_bottom_up),
    ("rgb_to_flow", rgb_to_flow),
]


def convert_checkpoint(weights: Dict, target: Target) -> Dict:
    """``weights`` through every conversion of ``CONVERSIONS``, in order."""
    for _, convert in CONVERSIONS:
        weights = convert(weights, target)
    return weights
