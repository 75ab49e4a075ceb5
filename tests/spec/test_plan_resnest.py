"""The plan of ResNeSt blocks (framework-free): split attention entries, avd pools, widths, refusals."""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core.plan import AvgPool, ConvNorm, SplitAttention, make_plan, resnest_attn_width
from resnet_core.spec import ResNeSt

TINY = rc.get_spec("resnest14d").replace(base_planes=8, stem_width=8, num_classes=5)


def _split(block) -> SplitAttention:
    return next(u for u in block.main if isinstance(u, SplitAttention))


def test_split_attention_holds_timms_modules_in_state_dict_order():
    plan = make_plan(TINY)
    block = plan.stage_blocks(2)[0]
    split = _split(block)
    names = [p.name for p in plan.params if p.module.startswith("layer2.0.conv2")]
    assert names == [f"layer2.0.conv2.{m}" for m in (
        "conv.weight", "bn0.weight", "bn0.bias", "bn0.running_mean", "bn0.running_var", "fc1.weight", "fc1.bias",
        "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "fc2.weight", "fc2.bias")]
    width = block.main[0].conv.out_channels
    assert (split.conv.out_channels, split.conv.groups, split.width) == (2 * width, 2, width)
    assert (split.fc1.in_channels, split.fc2.out_channels) == (width, 2 * width)
    assert split.fc1.bias and split.fc2.bias and not split.conv.bias


@pytest.mark.parametrize("avd_first", [False, True])
def test_a_strided_block_moves_its_stride_to_a_3x3_counted_average_pool(avd_first):
    plan = make_plan(TINY.replace(block_spec=ResNeSt(radix=2, avd=True, avd_first=avd_first)))
    first, split, _ = plan.stage_blocks(2)[0].main
    assert isinstance(first, ConvNorm) and split.conv.stride == 1
    pool = first.pool if avd_first else split.pool
    assert (first.pool if not avd_first else split.pool) is None
    assert pool == AvgPool(f"layer2.0.{'avd_first' if avd_first else 'avd_last'}", 3, 2, "pad")
    assert pool.padding == 1
    # stage 1 does not stride: no avd pool there; without avd the 3x3 conv strides
    assert first.pool is None if not avd_first else True
    assert _split(plan.stage_blocks(1)[0]).pool is None and plan.stage_blocks(1)[0].main[0].pool is None
    plain = make_plan(TINY.replace(block_spec=ResNeSt(radix=2)))
    assert _split(plain.stage_blocks(2)[0]).conv.stride == 2 and _split(plain.stage_blocks(2)[0]).pool is None


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 64, 65, 77])
def test_pad_pool_sizes_are_pytorchs_floor_with_padding(size):
    # nn.AvgPool2d(3, 2, padding=1): floor((n + 2 - 3) / 2) + 1
    plan = make_plan(TINY)
    sizes = plan.module_sizes(size * 4, size * 4 + 1)
    before = sizes["layer2.0.conv2.conv"]
    assert sizes["layer2.0.avd_last"] == tuple((n + 2 - 3) // 2 + 1 for n in before)


def test_dilated_stages_have_no_avd_pool_and_dilate_the_split_attention():
    plan = make_plan(TINY.replace(output_stride=8))
    for stage in (3, 4):
        split = _split(plan.stage_blocks(stage)[0])
        assert split.pool is None and split.conv.stride == 1
    assert _split(plan.stage_blocks(4)[0]).conv.dilation == 2


@pytest.mark.parametrize("width, radix, ratio, divisor, want", [
    (64, 2, 0.25, 8, 32), (128, 2, 0.25, 8, 64), (40, 4, 0.25, 8, 40), (24, 1, 0.25, 8, 32), (100, 1, 0.25, 8, 32),
    (200, 1, 0.25, 16, 48), (35, 1, 1.0, 32, 32), (36, 1, 1.0, 32, 64)])  # the last: 36 rounds to 32 < 0.9 * 36
def test_attention_width_is_timms_make_divisible(width, radix, ratio, divisor, want):
    assert resnest_attn_width(width, ResNeSt(radix=radix, rd_ratio=ratio, rd_divisor=divisor)) == want


def test_radix_one_gates_with_its_own_widths():
    spec = TINY.replace(block_spec=ResNeSt(groups=4, width_per_group=24, radix=1, avd=True, avd_first=True))
    split = _split(make_plan(spec).stage_blocks(1)[0])
    assert (split.radix, split.groups, split.conv.groups, split.conv.out_channels) == (1, 4, 4, split.width)


@pytest.mark.parametrize("changes, field", [
    ({"preact": True}, "preact"), ({"anti_alias": "avg"}, "anti_alias"), ({"reduce_first": 2}, "reduce_first")])
def test_options_timms_block_lacks_are_refused_by_name(changes, field):
    with pytest.raises(rc.SpecError, match=f"ResNetSpec.{field}: ResNeSt blocks"):
        make_plan(TINY.replace(**changes))


def test_widths_the_split_groups_cannot_divide_are_refused():
    with pytest.raises(rc.SpecError, match=r"stage 1's split attention takes 10 channels in groups \* radix"):
        TINY.replace(block_spec=ResNeSt(groups=2, width_per_group=40, radix=4, avd=True))  # refused when made


def test_spec_json_keeps_the_block_parameters():
    spec = rc.get_spec("resnest50d_4s2x40d")
    back = rc.ResNetSpec.from_dict(spec.to_dict())
    assert back == spec and back.block_spec == ResNeSt(groups=2, width_per_group=40, radix=4, avd=True,
                                                       avd_first=True)


def test_summary_names_the_split_attention():
    rows = rc.summary("resnest50d_4s2x40d").rows
    assert rows[1].shape.endswith("[1x1, 80; 3x3, 80, C=2, split attention radix 4; 1x1, 256] x 3")


@pytest.mark.parametrize("name, gate", [("resnest50d_4s2x40d", "softmax over radix 4 per group (2)"),
                                        ("resnest50d_1s4x24d", "sigmoid gate per group (4)"),
                                        ("resnest14d", "softmax over radix 2, weighted sum")])
def test_svg_draws_the_split_attention_and_its_avd_pool(name, gate):
    from resnet_core.diagram import svg

    text = svg(name)
    assert gate in text
    # the strided blocks of stages 2-4 draw as one type, its avd pool once; the others have none
    assert text.count("3x3 avg pool, /2 (avd)") == 1 and "block layer2.0" in text
    assert "anti-aliasing" not in text
