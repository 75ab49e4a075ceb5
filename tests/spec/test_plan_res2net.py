"""Res2Net in the plan, framework-free: the scales entry (splits, cascade, first blocks' pooled split), its
sizes at odd inputs, the names and widths, the refusals, spec round trips and inference from shapes."""

from __future__ import annotations

import pytest

import resnet_core as rc
from resnet_core.io.infer import InferenceError, infer_spec
from resnet_core.plan import AvgPool, Res2NetScales, make_plan
from resnet_core.spec import Res2Net, ResNetSpec

SMALL = rc.get_spec("res2net50_26w_4s").replace(layers=(2, 2, 1, 1), base_planes=16)


def _scales(plan):
    return {b.name: next(u for u in b.main if isinstance(u, Res2NetScales)) for b in plan.blocks}


def test_main_path_is_conv1_scales_conv3_with_timms_names():
    plan = make_plan(SMALL)
    block = plan.blocks[2]  # layer2.0: strided, projecting
    conv1, scales, conv3 = block.main
    assert (conv1.conv.name, conv1.norm.name, conv3.conv.name, conv3.norm.name) == \
        ("layer2.0.conv1", "layer2.0.bn1", "layer2.0.conv3", "layer2.0.bn3")
    assert scales.name == "layer2.0" and scales.width == 13 and scales.scale == 4  # int(32 * 26 / 64) = 13
    assert [c.name for c in scales.convs] == ["layer2.0.convs.0", "layer2.0.convs.1", "layer2.0.convs.2"]
    assert [n.name for n in scales.bns] == ["layer2.0.bns.0", "layer2.0.bns.1", "layer2.0.bns.2"]
    assert all((c.stride, c.padding, c.in_channels, c.out_channels) == (2, 1, 13, 13) for c in scales.convs)
    assert conv1.conv.out_channels == conv3.conv.in_channels == 52
    assert scales.first and scales.pool == AvgPool("layer2.0.pool", 3, 2, "pad")
    names = [p.name for p in plan.params if p.name.startswith("layer2.0.")]
    assert names.index("layer2.0.bn1.weight") < names.index("layer2.0.convs.0.weight") < \
        names.index("layer2.0.bns.0.weight") < names.index("layer2.0.conv3.weight")


def test_is_first_where_the_block_strides_or_projects():
    scales = _scales(make_plan(SMALL))
    assert {n for n, s in scales.items() if s.first} == {"layer2.0", "layer3.0", "layer4.0"}
    assert all((s.pool is not None) == s.first for s in scales.values())
    wide_stem = _scales(make_plan(SMALL.replace(stem_width=32)))  # layer1.0 now projects 32 -> 64
    assert wide_stem["layer1.0"].first and wide_stem["layer1.0"].pool.stride == 1
    dilated = _scales(make_plan(SMALL.replace(output_stride=8)))  # stride 1, dilated, still projecting
    assert dilated["layer4.0"].first and dilated["layer4.0"].pool.stride == 1
    assert dilated["layer4.0"].convs[0].dilation == 2 and dilated["layer4.0"].convs[0].padding == 2


@pytest.mark.parametrize("height, width", [(65, 77), (33, 35), (64, 64)])
def test_pooled_split_sizes_as_the_strided_convs(height, width):
    plan = make_plan(SMALL)
    sizes = plan.module_sizes(height, width)
    for name in ("layer2.0", "layer3.0", "layer4.0"):
        assert sizes[f"{name}.pool"] == sizes[f"{name}.convs.0"] == sizes[f"{name}.conv3"]


def test_scale_one_and_cardinality():
    one = _scales(make_plan(SMALL.replace(block_spec=Res2Net(scale=1))))["layer2.0"]
    assert len(one.convs) == 1 and one.pool is None  # one split, convolved; nothing passes
    nx = _scales(make_plan(rc.get_spec("res2next50")))["layer1.0"]
    assert nx.width == 32 and nx.convs[0].groups == 8  # int(64 * 4 / 64) * 8


def test_refusals_name_the_option():
    for change in ({"anti_alias": "avg"}, {"preact": True}):
        with pytest.raises(rc.SpecError, match=next(iter(change))):
            make_plan(SMALL.replace(**change))
    with pytest.raises(rc.SpecError, match="scale"):
        Res2Net(scale=0)


def test_spec_round_trips_through_its_dict():
    spec = rc.get_spec("res2next50")
    assert ResNetSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict()["block_spec"] == {"type": "res2net", "groups": 8, "width_per_group": 4,
                                            "stride_in_1x1": False, "scale": 4}


@pytest.mark.parametrize("spec", [SMALL, SMALL.replace(block_spec=Res2Net(groups=2, width_per_group=8, scale=6),
                                                        stem="deep", stem_width=8, downsample="avg", num_classes=3),
                                  rc.get_spec("res2net50_48w_2s")])
def test_inferred_from_names_and_shapes(spec):
    got, how = infer_spec({p.name: p.shape for p in make_plan(spec).params})
    assert got == spec, how


def test_inference_refuses_mixed_scales():
    shapes = {p.name: p.shape for p in make_plan(SMALL).params}
    other = {p.name: p.shape for p in make_plan(SMALL.replace(block_spec=Res2Net(scale=2))).params}
    shapes.update({k: v for k, v in other.items() if k.startswith("layer4.")})
    shapes = {k: v for k, v in shapes.items() if not k.startswith("layer4.") or k in other}
    with pytest.raises(InferenceError, match="scale, cardinality"):
        infer_spec(shapes)
