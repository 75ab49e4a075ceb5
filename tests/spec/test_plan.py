"""The plan: where strides, projections, channels, names and taps go (framework-free)."""

from __future__ import annotations

import math
import re

import pytest

import resnet_core as rc
from resnet_core.layouts import Layout
from resnet_core.plan import Conv
from resnet_core.presets import TORCHVISION_PRESETS
from resnet_core.spec import ResNetSpec

# Classic-family specs (7x7 stem, conv shortcuts, output stride 32), each with whether layer1.0 needs a
# projection: it does when the stem's width differs from stage 1's output width (every bottleneck).
CASES = {
    **{name: (rc.get_spec(name), rc.get_spec(name).block == "bottleneck") for name in TORCHVISION_PRESETS},
    "keras_resnet50": (rc.get_spec("keras_resnet50"), True),
    "tiny_resnext": (rc.get_spec("tiny_resnext"), True),
    "basic-narrow-stem": (ResNetSpec(block="basic", layers=(1, 2, 1), stem_width=32, num_classes=5), True),
    "basic-base-32": (ResNetSpec(block="basic", layers=(2, 2), stem_width=32, base_planes=32), False),
    "bottleneck-5-stages": (ResNetSpec(layers=(1, 1, 2, 1, 1), groups=2, width_per_group=32), True),
    "bottleneck-one-stage": (ResNetSpec(layers=(3,)), True),
    "headless-max": (ResNetSpec(layers=(1, 1, 1, 1), include_top=False, pooling="max"), True),
    "headless-none": (ResNetSpec(layers=(1, 1, 1, 1), include_top=False), True),
    "stride-in-1x1": (ResNetSpec(layers=(2, 2, 2), stride_in_1x1=True), True),
}
IDS = list(CASES)
SPECS = [CASES[i][0] for i in IDS]


@pytest.fixture(params=IDS)
def case(request):
    spec, layer1_projection = CASES[request.param]
    return spec, rc.make_plan(spec), layer1_projection


def test_projection_shortcut_exactly_on_first_block_of_each_stage(case):
    spec, plan, layer1_projection = case
    projected = {b.name for b in plan.blocks if b.shortcut is not None}
    expected = {f"layer{s}.0" for s in range(2, len(spec.layers) + 1)}
    if layer1_projection:
        expected.add("layer1.0")
    assert projected == expected


@pytest.mark.parametrize(("name", "projected"), [("resnet18", False), ("resnet34", False), ("resnet50", True),
                                                  ("resnext50_32x4d", True), ("wide_resnet50_2", True)])
def test_layer1_0_projection_bottleneck_yes_basic_no(name, projected):
    block = rc.make_plan(rc.get_spec(name)).blocks[0]
    assert block.name == "layer1.0"
    assert (block.shortcut is not None) is projected


def test_shortcut_geometry(case):
    _, plan, _ = case
    for block in plan.blocks:
        if block.shortcut is None:
            assert block.in_channels == block.out_channels and block.stride == 1, block.name
            continue
        conv, norm = block.shortcut.conv, block.shortcut.norm
        assert (conv.kernel_size, conv.padding, conv.groups) == (1, 0, 1), block.name
        assert conv.stride == block.stride, block.name
        assert (conv.in_channels, conv.out_channels, norm.channels) == (
            block.in_channels, block.out_channels, block.out_channels), block.name
        assert block.shortcut.relu is False  # ReLU comes after the addition
        assert (conv.name, norm.name) == (f"{block.name}.downsample.0", f"{block.name}.downsample.1")


def test_block_strides(case):
    spec, plan, _ = case
    net = 4  # stem conv and max-pool
    for block in plan.blocks:
        # Stages after the first halve the resolution in their first block, until the output stride
        # is reached (a fifth stage at output_stride=32 dilates instead).
        expected = 2 if block.stage > 1 and block.index == 0 and net < spec.output_stride else 1
        assert block.stride == expected, block.name
        net *= block.stride


def test_stride_position_v1_5_or_stride_in_1x1(case):
    spec, plan, _ = case
    for block in plan.blocks:
        strides = [u.conv.stride for u in block.main]
        if spec.block == "basic":
            expected = [block.stride, 1]
        elif spec.stride_in_1x1:  # v1 (the paper, keras.applications): stride on the first 1x1
            expected = [block.stride, 1, 1]
        else:  # v1.5 (torchvision): stride on the 3x3
            expected = [1, block.stride, 1]
        assert strides == expected, block.name


@pytest.mark.parametrize(("name", "conv1_stride", "conv2_stride"),
                         [("resnet50", 1, 2), ("keras_resnet50", 2, 1)], ids=["v1.5", "v1"])
def test_downsampling_block_stride_placement(name, conv1_stride, conv2_stride):
    block = rc.make_plan(rc.get_spec(name)).stage_blocks(2)[0]
    assert (block.main[0].conv.stride, block.main[1].conv.stride, block.main[2].conv.stride) == (
        conv1_stride, conv2_stride, 1)


def test_total_stride(case):
    spec, plan, _ = case
    stem = math.prod(u.conv.stride for u in plan.stem.units) * plan.stem.pool.stride
    blocks = math.prod(b.stride for b in plan.blocks)
    assert stem == 4
    assert stem * blocks == min(2 ** (1 + len(spec.layers)), spec.output_stride)


def test_kernels_and_padding(case):
    spec, plan, _ = case
    (stem,) = plan.stem.units
    assert (stem.conv.kernel_size, stem.conv.stride, stem.conv.padding) == (7, 2, 3)
    assert (plan.stem.pool.kernel_size, plan.stem.pool.stride, plan.stem.pool.padding) == (3, 2, 1)
    # torchvision's conv1x1 pads 0 and conv3x3 pads 1 (none of these cases dilates); no conv of theirs has a
    # bias, while keras.applications' v1 biases every conv
    for item in plan.modules():
        if isinstance(item, Conv):
            assert (item.kernel_size, item.padding, item.dilation) in ((1, 0, 1), (3, 1, 1), (7, 3, 1)), item.name
            assert item.bias is (spec.name == "keras_resnet50"), item.name
        else:
            assert item.eps == spec.bn_eps and item.momentum == spec.bn_momentum


def test_channels_chain(case):
    spec, plan, _ = case
    assert plan.stem.units[0].conv.in_channels == spec.in_channels
    assert plan.stem.out_channels == spec.stem_width
    cin = plan.stem.out_channels
    for block in plan.blocks:
        planes = spec.base_planes * 2 ** (block.stage - 1)
        assert block.in_channels == cin, block.name
        assert block.out_channels == planes * spec.expansion, block.name
        units = block.main
        assert units[0].conv.in_channels == block.in_channels
        assert units[-1].conv.out_channels == block.out_channels
        for prev, nxt in zip(units, units[1:], strict=False):
            assert nxt.conv.in_channels == prev.conv.out_channels, block.name
        for unit in units:
            assert unit.norm.channels == unit.conv.out_channels
        assert [u.relu for u in units] == [True] * (len(units) - 1) + [False]
        if spec.block == "bottleneck":
            width = int(planes * spec.width_per_group / 64) * spec.groups
            assert [u.conv.out_channels for u in units] == [width, width, block.out_channels]
            assert [u.conv.groups for u in units] == [1, spec.groups, 1]
            assert [u.conv.kernel_size for u in units] == [1, 3, 1]
        else:
            assert [u.conv.kernel_size for u in units] == [3, 3]
        cin = block.out_channels
    assert plan.head.out_channels == (spec.num_classes if spec.include_top else cin)
    if spec.include_top:
        assert (plan.head.fc.in_features, plan.head.fc.out_features) == (cin, spec.num_classes)


def test_stages_have_the_spec_depths(case):
    spec, plan, _ = case
    assert plan.num_stages == len(spec.layers)
    assert tuple(len(plan.stage_blocks(s)) for s in range(1, plan.num_stages + 1)) == spec.layers
    assert [b.name for b in plan.blocks] == [f"layer{s}.{i}" for s, d in enumerate(spec.layers, 1) for i in range(d)]


_NAME = re.compile(
    r"^(conv1|bn1|fc|layer\d+\.\d+\.(conv\d|bn\d|downsample\.[01]))\.(weight|bias|running_mean|running_var)$"
)


def test_canonical_names_unique_and_torchvision_shaped(case):
    spec, plan, _ = case
    names = [p.name for p in plan.params]
    assert len(names) == len(set(names))
    bad = [n for n in names if not _NAME.match(n)]
    assert not bad
    assert set(plan.param_index) == set(names)
    assert all(plan.param_index[p.name] is p for p in plan.params)
    assert names[0] == "conv1.weight"
    if spec.include_top:
        assert names[-2:] == ["fc.weight", "fc.bias"]
    else:  # headless: the last tensors are the last block's (or the pre-activation head's final norm)
        assert not any(n.startswith("fc.") for n in names)
        assert names[-1].startswith((f"{plan.blocks[-1].name}.", "norm.")), names[-1]


def test_params_follow_state_dict_order_per_block(case):
    spec, plan, _ = case
    modules = list(dict.fromkeys(p.module for p in plan.params))  # first appearance order
    assert modules[:2] == ["conv1", "bn1"]
    for block in plan.blocks:
        mine = [m for m in modules if m.startswith(block.name + ".")]
        main = [f"{block.name}.{kind}{i}" for i in range(1, len(block.main) + 1) for kind in ("conv", "bn")]
        shortcut = [f"{block.name}.downsample.0", f"{block.name}.downsample.1"] if block.shortcut else []
        assert mine == main + shortcut, block.name
    block_starts = [modules.index(f"{b.name}.conv1") for b in plan.blocks]
    assert block_starts == sorted(block_starts)  # blocks in network order


def test_param_shapes_roles_and_layouts(case):
    spec, plan, _ = case
    suffix_role = {"running_mean": {"moving_mean"}, "running_var": {"moving_variance"},
                   "weight": {"kernel", "gamma"}, "bias": {"bias", "beta"}}
    for p in plan.params:
        assert p.role in suffix_role[p.name.rsplit(".", 1)[1]], p.name
        assert p.trainable is not p.name.endswith(("running_mean", "running_var")), p.name  # PyTorch's buffers
        assert p.size == math.prod(p.shape)
        assert p.layout is {4: Layout.CONV, 2: Layout.DENSE, 1: Layout.SAME}[len(p.shape)], p.name
        assert (p.role == "kernel") is (len(p.shape) > 1), p.name


# Shapes of torchvision's state_dict tensors (torchvision.models.resnet50().state_dict(), resnext50_32x4d's).
TORCHVISION_SHAPES = {
    "resnet50": {"conv1.weight": (64, 3, 7, 7), "layer1.0.conv2.weight": (64, 64, 3, 3),
                 "layer1.0.downsample.0.weight": (256, 64, 1, 1), "layer2.0.conv1.weight": (128, 256, 1, 1),
                 "layer3.5.bn3.running_var": (1024,), "layer4.2.conv3.weight": (2048, 512, 1, 1),
                 "fc.weight": (1000, 2048), "fc.bias": (1000,)},
    "resnext50_32x4d": {"layer1.0.conv2.weight": (128, 4, 3, 3), "layer4.0.conv2.weight": (1024, 32, 3, 3),
                        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1)},
    "resnet18": {"layer1.1.conv2.weight": (64, 64, 3, 3), "layer2.0.downsample.0.weight": (128, 64, 1, 1),
                 "fc.weight": (1000, 512)},
}


@pytest.mark.parametrize("name", list(TORCHVISION_SHAPES))
def test_param_shapes_are_torchvisions(name):
    params = rc.make_plan(rc.get_spec(name)).param_index
    assert {k: params[k].shape for k in TORCHVISION_SHAPES[name]} == TORCHVISION_SHAPES[name]


def test_bn_statistics_are_not_counted(case):
    _, plan, _ = case
    buffers = sum(p.size for p in plan.params if not p.trainable)
    norms = sum(n.channels for n in plan.norms())
    assert buffers == 2 * norms
    assert plan.num_params == sum(p.size for p in plan.params) - buffers


@pytest.mark.parametrize(("name", "head"), [("resnet18", ("pool", "logits")), ("headless-max", ("pool",)),
                                          ("headless-none", ())])
def test_taps_in_network_order(name, head):
    plan = rc.make_plan(CASES[name][0])
    blocks = [f"layer{s}.{i}" for s, depth in enumerate(plan.spec.layers, 1) for i in range(depth)]
    assert plan.taps == ("stem", *blocks, *head)
    assert len(set(plan.taps)) == len(plan.taps)


def test_feature_taps_are_the_last_block_of_each_stage(case):
    spec, plan, _ = case
    assert plan.feature_taps == tuple(f"layer{s}.{d - 1}" for s, d in enumerate(spec.layers, 1))
    positions = [plan.taps.index(t) for t in plan.feature_taps]
    assert positions == sorted(positions)


@pytest.mark.parametrize("zero", [False, True], ids=["default", "zero_init_residual"])
def test_zero_init_residual_marks_the_last_norm_of_each_branch(zero):
    plan = rc.make_plan(rc.get_spec("tiny_resnext").replace(zero_init_residual=zero))
    last = {b.main[-1].norm.name for b in plan.blocks}
    for p in plan.params:
        if p.role == "gamma":
            assert p.init == ("zeros" if zero and p.module in last else "ones"), p.name


def test_make_plan_is_cached_per_spec():
    spec = ResNetSpec(layers=(1, 1))
    assert rc.make_plan(spec) is rc.make_plan(ResNetSpec(layers=[1, 1]))
    assert rc.make_plan(spec) is not rc.make_plan(spec.replace(num_classes=3))


def test_plan_spec_keeps_the_requested_name():
    rc.make_plan(ResNetSpec(layers=(1, 2, 1, 1), name="first"))
    assert rc.make_plan(ResNetSpec(layers=(1, 2, 1, 1), name="second")).spec.name == "second"


@pytest.mark.parametrize(("name", "act"), [("resnetv2_50d_gn", "relu"), ("resnetv2_50d_frn", "fused"),
                                           ("resnetv2_50d_evos", "fused"), ("resnet50", "relu")])
def test_activation_of_normed_units_is_decided_in_the_plan(name, act):
    """timm's EvoNorm and FRN layers are norm-and-activation in one (no nn.ReLU follows them); the Keras graph,
    built from the plan alone, has a ReLU after a unit's norm exactly where the plan says "relu"."""
    from resnet_core.keras_graph import keras_graph
    from resnet_core.mapping import keras_layer_name

    plan = rc.make_plan(rc.get_spec(name))
    units = [u for u in (*plan.stem.units, *(u for b in plan.blocks for u in b.main)) if u.norm is not None]
    assert {u.act for u in units if u.relu} == {act}
    assert {u.act for u in units if not u.relu} <= {None}
    layers, _ = keras_graph(plan)
    relus = {layer.name for layer in layers if layer.cls == "ReLU"}
    assert {u.norm.name for u in units if f"{keras_layer_name(u.norm.name)}_relu" in relus} == \
        {u.norm.name for u in units if u.act == "relu"}
