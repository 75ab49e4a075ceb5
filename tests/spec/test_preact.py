"""Pre-activation (ResNet v2) structure and the stride_block / stem_pool_padding options, framework-free.

The numbers checked here are the rules keras.applications V2, timm's resnetv2 and keras-hub encode;
test_peers_keras.py proves our Keras model computes what keras.applications does with them.
"""

from __future__ import annotations

import math

import pytest

import resnet_core as rc
from resnet_core.plan import AvgPool, Conv, MaxPool, Norm
from resnet_core.spec import SpecError


def _strides(plan) -> list[list[int]]:
    return [[b.stride for b in plan.stage_blocks(s)] for s in range(1, plan.num_stages + 1)]


def test_keras_v2_strides_sit_on_the_last_block_of_stages_one_to_three():
    plan = rc.make_plan(rc.get_spec("keras_resnet50v2"))
    assert _strides(plan) == [[1, 1, 2], [1, 1, 1, 2], [1, 1, 1, 1, 1, 2], [1, 1, 1]]
    for block in plan.blocks:
        conv2 = block.main[1].conv
        assert conv2.stride == block.stride and block.main[0].conv.stride == 1, block.name
        if block.index == 0:  # a change of width: projection, fed by the pre-activated input, stride 1
            assert block.shortcut is not None and block.shortcut_preact and block.shortcut.norm is None
            assert block.shortcut.conv.stride == 1 and block.shortcut.conv.bias
            assert block.shortcut_pool is None
        elif block.stride == 2:  # a stride alone: subsample the raw input
            assert block.shortcut is None
            assert block.shortcut_pool == MaxPool(f"{block.name}.downsample.pool", kernel_size=1, stride=2, padding=0)
        else:
            assert block.shortcut is None and block.shortcut_pool is None


def test_keras_v2_stage_outputs_are_at_strides_8_16_32_32():
    plan = rc.make_plan(rc.get_spec("keras_resnet50v2"))
    sizes = plan.norm_sizes(224, 224)
    following = {"layer1.2": "layer2.0.norm1", "layer2.3": "layer3.0.norm1", "layer3.5": "layer4.0.norm1",
                 "layer4.2": "norm"}
    assert [sizes[following[t]] for t in plan.feature_taps] == [(28, 28), (14, 14), (7, 7), (7, 7)]
    assert plan.output_size(224, 224) == (7, 7)
    assert plan.output_size(65, 77) == (3, 3)


def test_preact_block_order_names_and_relus():
    plan = rc.make_plan(rc.get_spec("resnetv2_50"))
    block = plan.blocks[0]
    assert block.pre_norm == Norm("layer1.0.norm1", 64, 1e-5, 0.1)
    assert [u.conv.name for u in block.main] == ["layer1.0.conv1", "layer1.0.conv2", "layer1.0.conv3"]
    assert [u.norm and u.norm.name for u in block.main] == ["layer1.0.norm2", "layer1.0.norm3", None]
    assert [u.relu for u in block.main] == [True, True, False]
    assert block.shortcut.conv.name == "layer1.0.downsample.conv" and block.shortcut.norm is None
    assert not any(b.relu_out for b in plan.blocks)
    assert [p.name for p in plan.params[:3]] == ["conv1.weight", "layer1.0.norm1.weight", "layer1.0.norm1.bias"]
    assert plan.params[-6].name == "norm.weight" and plan.params[-1].name == "fc.bias"
    assert plan.taps[-3:] == ("norm", "pool", "logits")
    # stride in the first block of stages 2-4 (timm's resnetv2, keras-hub), on the 3x3 and the projection
    assert _strides(plan) == [[1, 1, 1], [2, 1, 1, 1], [2, 1, 1, 1, 1, 1], [2, 1, 1]]
    assert [b.shortcut.conv.stride for b in plan.blocks if b.shortcut] == [1, 2, 2, 2]


def test_preact_stem_has_no_norm_and_its_pool_pads_as_told():
    v2 = rc.make_plan(rc.get_spec("keras_resnet50v2"))
    (stem,) = v2.stem.units
    assert stem.norm is None and not stem.relu and stem.conv.bias
    assert v2.stem.pool.pad_value == 0.0
    assert rc.make_plan(rc.get_spec("resnetv2_50")).stem.pool.pad_value == -math.inf
    deep = rc.make_plan(rc.get_spec("resnetv2_50").replace(stem="deep", stem_width=32))
    assert [u.norm and u.norm.name for u in deep.stem.units] == ["conv1.1", "conv1.4", None]
    assert [u.relu for u in deep.stem.units] == [True, True, False]


def test_preact_biases_only_where_no_norm_follows():
    plan = rc.make_plan(rc.get_spec("keras_resnet50v2"))
    convs = [m for m in plan.modules() if isinstance(m, Conv)]
    biased = {c.name.split(".")[-1] for c in convs if c.bias}
    assert biased == {"conv1", "conv3", "conv"}  # the stem, each last conv, each projection
    assert not any(c.bias for c in convs if c.name.endswith(("conv1", "conv2")) and c.name != "conv1")
    assert not any(c.bias for c in rc.make_plan(rc.get_spec("resnetv2_50")).modules() if isinstance(c, Conv))


def test_keras_v2_parameter_counts_equal_keras_applications():
    """keras.io's table: trainable parameters of ResNet50V2/101V2/152V2 (BN statistics are not)."""
    counts = {name: rc.make_plan(rc.get_spec(name)).num_params for name in
              ("keras_resnet50v2", "keras_resnet101v2", "keras_resnet152v2")}
    assert counts == {"keras_resnet50v2": 25_568_360, "keras_resnet101v2": 44_577_896,
                      "keras_resnet152v2": 60_236_904}


def test_preact_avg_downsample_uses_timm_names():
    plan = rc.make_plan(rc.get_spec("resnetv2_50").replace(downsample="avg"))
    block = plan.blocks[3]  # layer2.0
    assert block.shortcut_pool == AvgPool("layer2.0.downsample.pool", 2, 2, "ceil")
    assert block.shortcut.conv.name == "layer2.0.downsample.conv" and block.shortcut.conv.stride == 1


def test_zero_init_residual_zeroes_the_bare_last_conv():
    plan = rc.make_plan(rc.get_spec("resnetv2_50").replace(zero_init_residual=True))
    inits = {p.name: p.init for p in plan.params}
    assert inits["layer1.0.conv3.weight"] == "zeros"
    assert inits["layer1.0.conv2.weight"] == "kaiming_normal_fan_out"
    assert inits["layer1.0.norm3.weight"] == "ones"


def test_stride_block_last_without_preact_subsamples_too():
    plan = rc.make_plan(rc.get_spec("resnet18").replace(stride_block="last"))
    assert _strides(plan) == [[1, 2], [1, 2], [1, 2], [1, 1]]
    block = plan.blocks[1]
    assert block.shortcut is None and block.shortcut_pool.kernel_size == 1
    assert [b.name for b in plan.blocks if b.shortcut] == ["layer2.0", "layer3.0", "layer4.0"]
    assert all(b.shortcut.conv.stride == 1 for b in plan.blocks if b.shortcut)


def test_single_block_stages_keep_their_moved_stride():
    plan = rc.make_plan(rc.get_spec("resnetv2_50").replace(layers=(1, 1, 1, 1), stride_block="last"))
    assert _strides(plan) == [[2], [2], [2], [1]]
    assert plan.output_size(64, 64) == (2, 2)


@pytest.mark.parametrize(("changes", "text"), [
    ({"stride_block": "middle"}, "stride_block: expected one of ('first', 'last')"),
    ({"stride_block": "last", "output_stride": 16}, "output_stride: expected 32 with stride_block='last'"),
    ({"stem_pool_padding": "edge"}, "stem_pool_padding: expected one of ('-inf', 'zero')"),
    ({"preact": 1}, "preact: expected a bool"),
])
def test_invalid_options_name_the_field(changes, text):
    with pytest.raises(SpecError, match=text.replace("(", r"\(").replace(")", r"\)")):
        rc.get_spec("resnetv2_50").replace(**changes)


def test_preact_spec_round_trips_through_json():
    spec = rc.get_spec("keras_resnet50v2")
    assert rc.ResNetSpec.from_json(spec.to_json()) == spec
