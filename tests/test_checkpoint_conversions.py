"""Each state-dict conversion of ``aamn.modeling.checkpoint_conversions`` alone: what it changes,
what it leaves, that it never modifies its input, and the order ``convert_checkpoint`` applies."""

import torch

from aamn.modeling.checkpoint_conversions import (
    CONVERSIONS,
    Target,
    convert_checkpoint,
    fpn_bottom_up,
    model_zoo_names,
    rename_prefixes,
    rgb_to_flow,
    strip_module_prefix,
    vgg16_names,
)


def _t(*shape):
    return torch.arange(int(torch.tensor(shape).prod()), dtype=torch.float32).reshape(shape)


def test_strip_module_prefix():
    weights = {"module.a.w": _t(2), "b.w": _t(3)}
    out = strip_module_prefix(weights, Target(state={}))
    assert set(out) == {"a.w", "b.w"} and set(weights) == {"module.a.w", "b.w"}


def test_rename_prefixes_only_names_the_model_lacks():
    target = Target(state={"head.new.w": _t(2), "old.kept": _t(1)}, renames={"old.": "head.new."})
    weights = {"old.w": _t(2), "old.kept": _t(1), "other": _t(1)}
    out = rename_prefixes(weights, target)
    assert set(out) == {"head.new.w", "old.kept", "other"} and "old.w" in weights


def test_rgb_to_flow_copies_only_into_a_two_stream_model_without_flow_weights():
    state = {"backbone.conv.w": _t(2), "flow_backbone.conv.w": _t(2)}
    weights = {"backbone.conv.w": _t(2) + 1, "head.w": _t(1)}
    out = rgb_to_flow(weights, Target(state=state))
    assert torch.equal(out["flow_backbone.conv.w"], weights["backbone.conv.w"])
    assert "flow_backbone.conv.w" not in weights
    assert rgb_to_flow(weights, Target(state=state, init_flow_from_rgb=False)) is weights
    assert rgb_to_flow(weights, Target(state={"backbone.conv.w": _t(2)})) is weights
    with_flow = {**weights, "flow_backbone.conv.w": _t(2) * 0}
    assert rgb_to_flow(with_flow, Target(state=state)) is with_flow


def test_fpn_bottom_up_moves_the_resnet_between_fpn_and_plain_backbones():
    fpn_file = {
        "backbone.bottom_up.res2.0.conv1.weight": _t(2) + 1,
        "backbone.bottom_up.res5.0.conv1.weight": _t(2) + 2,  # a stage the model lacks
        "backbone.fpn_lateral2.weight": _t(2),
        "roi_heads.box_predictor.cls_score.weight": _t(1),
    }
    plain = {"backbone.res2.0.conv1.weight": _t(2), "heads.w": _t(1)}
    out = fpn_bottom_up(fpn_file, Target(state=plain))
    assert torch.equal(out["backbone.res2.0.conv1.weight"], fpn_file[next(iter(fpn_file))])
    assert "backbone.bottom_up.res2.0.conv1.weight" not in out  # moved, not copied
    assert "backbone.bottom_up.res5.0.conv1.weight" in out  # left for the loader to list
    assert "backbone.fpn_lateral2.weight" in out and len(fpn_file) == 4
    # the other way: a plain ResNet file into an FPN model
    fpn_model = {"backbone.bottom_up.res2.0.conv1.weight": _t(2), "backbone.fpn_output2.w": _t(1)}
    back = fpn_bottom_up({"backbone.res2.0.conv1.weight": _t(2) + 3}, Target(state=fpn_model))
    assert set(back) == {"backbone.bottom_up.res2.0.conv1.weight"}
    # the same kind of backbone on both sides: unchanged
    assert fpn_bottom_up(fpn_file, Target(state=fpn_model)) is fpn_file
    assert fpn_bottom_up(plain, Target(state=plain)) is plain


def _torchvision_vgg16():
    from aamn.modeling.backbone.vgg import _TORCHVISION_CONV_INDEX, _conv_names

    weights = {}
    for name, i in zip(_conv_names(), _TORCHVISION_CONV_INDEX):
        weights[f"features.{i}.weight"], weights[f"features.{i}.bias"] = _t(2, 1, 1, 1), _t(2)
    for fc, i in (("fc6", 0), ("fc7", 3)):
        weights[f"classifier.{i}.weight"], weights[f"classifier.{i}.bias"] = _t(3, 2), _t(3)
    return weights


def test_vgg16_names_for_a_model_with_a_vgg16_stream():
    weights = _torchvision_vgg16()
    target = Target(
        state={"rgb_head.fc1.weight": _t(3, 2)}, vgg16_backbone=True, vgg16_heads=("rgb_head.",)
    )
    out = vgg16_names(weights, target)
    assert torch.equal(out["backbone.conv1_1.weight"], weights["features.0.weight"])
    assert torch.equal(out["rgb_head.fc1.weight"], weights["classifier.0.weight"])
    assert torch.equal(out["rgb_head.fc2.weight"], weights["classifier.3.weight"])
    assert vgg16_names(weights, Target(state={})) is weights  # another backbone: unchanged


def test_model_zoo_names_match_the_rgb_backbone_when_asked():
    state = {"backbone.bottom_up.res2.0.conv1.weight": _t(4, 2), "head.w": _t(1)}
    weights = {"res2.0.conv1.weight": _t(4, 2) + 5}
    assert model_zoo_names(weights, Target(state=state)) is weights  # not asked
    out = model_zoo_names(weights, Target(state=state, matching_heuristics=True))
    assert set(out) == {"backbone.bottom_up.res2.0.conv1.weight"}
    assert torch.equal(
        out["backbone.bottom_up.res2.0.conv1.weight"], weights["res2.0.conv1.weight"]
    )


def test_convert_checkpoint_applies_the_listed_order():
    assert [name for name, _ in CONVERSIONS] == [
        "vgg16_names",
        "model_zoo_names",
        "strip_module_prefix",
        "rename_prefixes",
        "fpn_bottom_up",
        "rgb_to_flow",
    ]
    # a DDP file of the old head names: the prefix goes first, then the rename, then the copy
    state = {"backbone.w": _t(1), "flow_backbone.w": _t(1), "matching_head.rgb_head.w": _t(1)}
    weights = {"module.backbone.w": _t(1) + 2, "module.rgb_head.w": _t(1) + 3}
    out = convert_checkpoint(
        weights, Target(state=state, renames={"rgb_head.": "matching_head.rgb_head."})
    )
    assert set(out) == set(state)
    assert torch.equal(out["flow_backbone.w"], weights["module.backbone.w"])


def test_a_detector_file_fills_both_streams_of_a_plain_two_stream_model():
    """The proposal detector's FPN backbone into a comparison system's two plain ResNets: the
    names move first, then the Flow stream is copied from them."""
    state = {"backbone.res2.w": _t(2), "flow_backbone.res2.w": _t(2), "heads.w": _t(1)}
    weights = {"backbone.bottom_up.res2.w": _t(2) + 4, "backbone.fpn_output2.w": _t(1)}
    out = convert_checkpoint(weights, Target(state=state))
    assert torch.equal(out["backbone.res2.w"], weights["backbone.bottom_up.res2.w"])
    assert torch.equal(out["flow_backbone.res2.w"], weights["backbone.bottom_up.res2.w"])
