"""SKNet's blocks in the spec and the plan, framework-free: timm's names, paddings, path shares and attention
widths; the spec's refusals naming the field; one spec per network; weight files giving the spec back."""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core.io import infer_spec, read_weights, write_weights
from resnet_core.io.infer import candidate_specs
from resnet_core.mapping import canonical_module, keras_layer_name
from resnet_core.plan import SelectiveKernelConv, timm_padding
from resnet_core.spec import SKBasic, SKBottleneck
from resnet_core.spec_sknet import sk_attn_width
from resnet_core.testing import assert_same_weights, random_weights

SMALL = {"layers": (1, 1, 1, 1), "base_planes": 16}
SK50 = rc.get_spec("resnet50").replace(block_spec=SKBottleneck())
SPECS = {
    "skresnet18": rc.get_spec("skresnet18").replace(**SMALL),
    "skresnext50": rc.get_spec("skresnext50_32x4d").replace(**SMALL),
    "sk50-deep-se": SK50.replace(stem="deep", stem_width=32, downsample="avg", attention="se", layers=(1, 2, 1, 1),
                                 base_planes=16),
    "sk50-groups2": SK50.replace(**SMALL, block_spec=SKBottleneck(groups=2, width_per_group=32)),
    "three-paths": rc.get_spec("skresnet18").replace(**SMALL, block_spec=SKBasic(kernel_sizes=(3, 5, 7),
                                                                                split_input=False, rd_ratio=0.25)),
    "plain-5x5": rc.get_spec("skresnet18").replace(**SMALL, block_spec=SKBasic(keep_3x3=False)),
}


def _sk(plan, block: int) -> SelectiveKernelConv:
    return next(u for u in plan.blocks[block].main if isinstance(u, SelectiveKernelConv))


def test_basic_block_names_strides_and_dilated_paths_are_timms():
    plan = rc.make_plan(rc.get_spec("skresnet18").replace(output_stride=16))
    sk = _sk(plan, 2)  # layer2.0: the selective kernel strides
    assert sk.name == "layer2.0.conv1" and [u.conv.name for u in sk.paths] == \
        ["layer2.0.conv1.paths.0.conv", "layer2.0.conv1.paths.1.conv"]
    assert [(u.conv.kernel_size, u.conv.stride, u.conv.dilation, u.conv.padding) for u in sk.paths] == \
        [(3, 2, 1, timm_padding(3, 2, 1)), (3, 2, 2, timm_padding(3, 2, 2))]
    assert [u.conv.in_channels for u in sk.paths] == [32, 32] and sk.split_input  # 64 inputs split over 2
    assert plan.blocks[2].main[1].conv.name == "layer2.0.conv2.conv" and not plan.blocks[2].main[1].relu
    dilated = _sk(plan, 6)  # layer4.0 at output stride 16: stride 1, the stage before's dilation 1, then 2
    assert [u.conv.dilation for u in _sk(plan, 7).paths] == [2, 4]
    assert [u.conv.stride for u in dilated.paths] == [1, 1]
    assert (sk.fc_reduce.name, sk.attn_norm.name, sk.fc_select.name) == \
        ("layer2.0.conv1.attn.fc_reduce", "layer2.0.conv1.attn.bn", "layer2.0.conv1.attn.fc_select")
    assert sk.fc_select.out_channels == 2 * sk.channels


def test_bottleneck_names_groups_and_attention_width():
    plan = rc.make_plan(rc.get_spec("skresnext50_32x4d"))
    conv1, sk, conv3 = plan.blocks[0].main
    assert (conv1.conv.name, conv1.norm.name, conv3.conv.name, conv3.norm.name) == \
        ("layer1.0.conv1.conv", "layer1.0.conv1.bn", "layer1.0.conv3.conv", "layer1.0.conv3.bn")
    assert sk.name == "layer1.0.conv2" and {u.conv.groups for u in sk.paths} == {32}
    assert not sk.split_input and sk.paths[0].conv.in_channels == 128
    assert sk.fc_reduce.out_channels == sk_attn_width(128, 1 / 16, 32)


@pytest.mark.parametrize(("channels", "ratio", "divisor"), [(64, 1 / 8, 16), (128, 1 / 16, 32), (72, 1 / 16, 8),
                                                            (200, 1 / 16, 32), (15, 0.5, 8)])
def test_attention_width_is_timms_make_divisible(channels, ratio, divisor):
    """timm's make_divisible: round to the divisor, at least the divisor, bumped up when rounding lost 10%."""
    value = channels * ratio
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    assert sk_attn_width(channels, ratio, divisor) == (rounded + divisor if rounded < 0.9 * value else rounded)
    assert sk_attn_width(channels, ratio, divisor) % divisor == 0
    assert sk_attn_width(channels, ratio, divisor) >= 0.9 * value


@pytest.mark.parametrize(("changes", "field"), [
    ({"preact": True}, "preact"),
    ({"norm": "group", "norm_groups": 8}, "norm"),
    ({"anti_alias": "avg"}, "anti_alias"),
    ({"conv_bias": True}, "conv_bias"),
], ids=lambda v: str(v))
def test_what_timm_cannot_build_with_selective_kernels_names_the_field(changes, field):
    with pytest.raises(rc.SpecError, match=rf"ResNetSpec\.{field}"):
        rc.get_spec("skresnet18").replace(**changes)


def test_uneven_splits_and_groups_are_refused():
    with pytest.raises(rc.SpecError, match="split_input=True needs a multiple"):
        rc.get_spec("skresnet18").replace(block_spec=SKBasic(kernel_sizes=(3, 5, 7)))  # 64 inputs over 3
    with pytest.raises(rc.SpecError, match="groups=32"):
        rc.get_spec("skresnext50_32x4d").replace(**SMALL, block_spec=SKBottleneck(groups=32, width_per_group=4))


def test_sub_spec_fields_are_checked():
    for bad in ({"kernel_sizes": (3,)}, {"kernel_sizes": (3, 4)}, {"keep_3x3": 1}, {"rd_ratio": 0}):
        with pytest.raises(rc.SpecError, match=rf"ResNetSpec\.{next(iter(bad))}"):
            SKBasic(**bad)


def test_one_spec_per_network():
    """Reduction pairs giving the same attention widths are one network, so one spec (as timm's presets')."""
    a = rc.get_spec("skresnet18").replace(**SMALL)
    b = a.replace(block_spec=SKBasic(rd_ratio=1 / 16, rd_divisor=16))
    assert a == b and a.block_spec.rd_ratio == 1 / 16
    assert rc.get_spec("skresnet18").block_spec == SKBasic(rd_ratio=1 / 8, rd_divisor=16)  # its widths need them
    assert rc.ResNetSpec.from_dict(a.to_dict()) == a


@pytest.mark.parametrize("name", list(SPECS))
def test_weight_files_round_trip_and_infer_the_spec(tmp_path, name):
    spec = SPECS[name]
    weights = random_weights(spec, seed=9)
    loaded = read_weights(write_weights(tmp_path / "w.safetensors", weights, spec))
    assert loaded.spec == spec
    assert_same_weights(loaded.weights, weights)
    shapes = {k: v.shape for k, v in weights.items()}
    inferred, _ = infer_spec(shapes)
    if name == "sk50-groups2":  # 2 groups over split inputs has the shapes of 4 over whole ones: both are offered
        assert (inferred.groups, inferred.block_spec.split_input) == (4, False)
        assert spec in [s.replace(name=spec.name) for s in candidate_specs(shapes)]
    else:
        assert inferred == spec.replace(name=inferred.name)


def test_presets_infer_from_their_shapes():
    for name in ("skresnet18", "skresnet34", "skresnext50_32x4d"):
        plan = rc.make_plan(rc.get_spec(name))
        spec, how = infer_spec({p.name: p.shape for p in plan.params})
        assert spec == rc.get_spec(name) and f"preset {name}" in how


def test_keras_names_of_the_attention_map_back():
    plan = rc.make_plan(SPECS["skresnext50"])
    for module in {p.module for p in plan.params}:
        assert canonical_module(keras_layer_name(module)) == module



def test_svg_draws_the_selective_kernel(tmp_path):
    import xml.etree.ElementTree as ET

    from resnet_core.diagram import write_svg

    out = tmp_path / "sk.svg"
    write_svg("skresnext50_32x4d", out)
    texts = [t.text or "" for t in ET.parse(out).getroot().iter("{http://www.w3.org/2000/svg}text")]
    assert "selective kernel: 3x3 | 3x3 dilation 2 conv, 256, /2, groups 32" in texts
    assert any(t.startswith("attention: sum, mean, 1x1 32") and t.endswith("softmax over 2 paths") for t in texts)
    table = rc.summary("skresnet18")
    assert table.params == rc.make_plan(rc.get_spec("skresnet18")).num_params
    assert "SK(3x3+3x3 d2), split, 64" in table.rows[1].shape
