"""Named specs: a strict registry (duplicates and unknown names raise, listing what is known)."""

from __future__ import annotations

from .errors import InputError, UnknownNameError
from .pruned_widths import ECARESNET50D_PRUNED_WIDTHS, ECARESNET101D_PRUNED_WIDTHS
from .spec import (
    Basic,
    BatchNorm,
    Bottleneck,
    GroupNorm,
    Res2Net,
    ResNeSt,
    ResNetSpec,
    Shortcut,
    SKBasic,
    SKBottleneck,
    StdConv,
    Stem,
)

_REGISTRY: dict[str, ResNetSpec] = {}


def register_spec(name: str, spec: ResNetSpec, *, overwrite: bool = False) -> ResNetSpec:
    """Register ``spec`` under ``name``; the stored spec carries that name.

    Args:
        name: The preset name, a non-empty string.
        spec: The spec to store (a copy named ``name`` is stored).
        overwrite: Replace a spec already registered under ``name`` instead of raising.

    Returns:
        The stored spec, whose ``name`` is ``name``.

    Raises:
        InputError: ``name`` is not a non-empty string, or is taken and ``overwrite`` is false.

    Example:
        Names are never silently replaced:

        >>> import resnet_core as rc
        >>> rc.register_spec("resnet18", rc.get_spec("resnet18").replace(num_classes=10))
        Traceback (most recent call last):
        ...
        resnet_core.errors.InputError: A spec named 'resnet18' is already registered; pass overwrite=True to replace it
    """
    if not isinstance(name, str) or not name:
        raise InputError(f"Preset names are non-empty strings. Received: {name!r}")
    if name in _REGISTRY and not overwrite:
        raise InputError(f"A spec named {name!r} is already registered; pass overwrite=True to replace it")
    spec = spec.replace(name=name)
    _REGISTRY[name] = spec
    return spec


def list_specs() -> list[str]:
    """Registered preset names, sorted.

    Returns:
        The names :func:`get_spec` accepts, in alphabetical order.

    Example:
        >>> import resnet_core as rc
        >>> "resnet50" in rc.list_specs()
        True
        >>> rc.list_specs() == sorted(rc.list_specs())
        True
    """
    return sorted(_REGISTRY)


def get_spec(name: str | ResNetSpec) -> ResNetSpec:
    """The preset called ``name`` (a spec passes through unchanged).

    Args:
        name: A registered preset name (see :func:`list_specs`), or a :class:`ResNetSpec`.

    Returns:
        The registered spec, or ``name`` itself when it is already a spec.

    Raises:
        UnknownNameError: No preset is called ``name``; the message lists the known ones.

    Example:
        >>> import resnet_core as rc
        >>> spec = rc.get_spec("resnet50")
        >>> spec.block, spec.layers, spec.depth
        ('bottleneck', (3, 4, 6, 3), 50)
        >>> rc.get_spec(spec) is spec
        True
        >>> rc.get_spec("resnet51")
        Traceback (most recent call last):
        ...
        resnet_core.errors.UnknownNameError: Unknown ResNet spec 'resnet51'. Known specs: ...
    """
    if isinstance(name, ResNetSpec):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise UnknownNameError(f"Unknown ResNet spec {name!r}. Known specs: {', '.join(list_specs())}") from None


# The families' bases in sub-specs; the presets below change them with flat names (both are fields' names).
_basic = ResNetSpec(block_spec=Basic(), layers=(2, 2, 2, 2))
_bottleneck = ResNetSpec(block_spec=Bottleneck(), layers=(3, 4, 6, 3))
_keras_norm = BatchNorm(eps=1.001e-5, momentum=0.01)  # Keras's epsilon and momentum (0.99 in Keras)
_keras_v1 = _bottleneck.replace(block_spec=Bottleneck(stride_in_1x1=True), conv_bias=True, norm_spec=_keras_norm)
_preact = _bottleneck.replace(preact=True)
_d_stem = {"stem_spec": Stem(kind="deep", width=32), "shortcut_spec": Shortcut(kind="avg")}  # timm's "d"
_preact_d = _preact.replace(**_d_stem)  # their weights expect 'tf' inputs
_bit = _preact.replace(norm_spec=GroupNorm(), std_conv_spec=StdConv(eps=1e-8),  # and these too
                       stem_spec=Stem(pool_padding="zero"))
_keras_v2 = _preact.replace(stride_block="last", conv_bias=True, stem_spec=Stem(pool_padding="zero"),
                            norm_spec=_keras_norm)

_timm_d = _bottleneck.replace(**_d_stem)
_timm_t = _timm_d.replace(stem="deep_tiered")
RESNET_RS_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), 200: (3, 24, 36, 3),
                    270: (4, 29, 53, 4), 350: (4, 36, 72, 4), 420: (4, 44, 87, 4)}

for _name, _spec in {
    "resnet18": _basic,
    "resnet34": _basic.replace(layers=(3, 4, 6, 3)),
    "resnet50": _bottleneck,
    "resnet101": _bottleneck.replace(layers=(3, 4, 23, 3)),
    "resnet152": _bottleneck.replace(layers=(3, 8, 36, 3)),
    "resnext50_32x4d": _bottleneck.replace(groups=32, width_per_group=4),
    "resnext101_32x8d": _bottleneck.replace(layers=(3, 4, 23, 3), groups=32, width_per_group=8),
    "resnext101_64x4d": _bottleneck.replace(layers=(3, 4, 23, 3), groups=64, width_per_group=4),
    "wide_resnet50_2": _bottleneck.replace(width_per_group=128),
    "wide_resnet101_2": _bottleneck.replace(layers=(3, 4, 23, 3), width_per_group=128),
    # The original (v1) ResNet of the paper as keras.applications builds it: stride on the first 1x1
    # conv, biased convolutions, Keras's epsilon and momentum (0.99 in Keras = 0.01 here). Their weights
    # expect 'caffe' inputs (BGR, mean subtraction): see weights_info.preset_info.
    "keras_resnet50": _keras_v1,
    "keras_resnet101": _keras_v1.replace(layers=(3, 4, 23, 3)),
    "keras_resnet152": _keras_v1.replace(layers=(3, 8, 36, 3)),
    # keras.applications ResNet50V2/101V2/152V2: pre-activation blocks, each stage's stride on the last
    # block of the stage before (with a 1x1 max-pool shortcut), biases on the convs no norm follows, a
    # zero-padded stem max-pool; their weights expect 'tf' inputs ([-1, 1]).
    "keras_resnet50v2": _keras_v2,
    "keras_resnet101v2": _keras_v2.replace(layers=(3, 4, 23, 3)),
    "keras_resnet152v2": _keras_v2.replace(layers=(3, 8, 36, 3)),
    # Pre-activation ResNets with the stride in each stage's first block, as timm's resnetv2_50/101 and
    # keras-hub's ResNetV2 backbones build them; their weights (timm's resnetv2_50.a1h_in1k, which
    # keras-hub converts) expect Inception normalisation, [-1, 1].
    "resnetv2_50": _preact,
    "resnetv2_101": _preact.replace(layers=(3, 4, 23, 3)),
    # timm's "d" and "t" variants: deep stem, average-pool shortcut; "se": squeeze-and-excitation.
    "resnet18d": _basic.replace(stem="deep", stem_width=32, downsample="avg"),
    "resnet26d": _bottleneck.replace(layers=(2, 2, 2, 2), stem="deep", stem_width=32, downsample="avg"),
    "resnet26t": _bottleneck.replace(layers=(2, 2, 2, 2), stem="deep_tiered", stem_width=32, downsample="avg"),
    "resnet34d": _basic.replace(layers=(3, 4, 6, 3), stem="deep", stem_width=32, downsample="avg"),
    "resnet50d": _bottleneck.replace(stem="deep", stem_width=32, downsample="avg"),
    "resnet101d": _bottleneck.replace(layers=(3, 4, 23, 3), stem="deep", stem_width=32, downsample="avg"),
    "resnext50d_32x4d": _bottleneck.replace(groups=32, width_per_group=4, stem="deep", stem_width=32,
                                            downsample="avg"),
    "seresnet50": _bottleneck.replace(attention="se"),
    "seresnext26d_32x4d": _bottleneck.replace(layers=(2, 2, 2, 2), groups=32, width_per_group=4, stem="deep",
                                              stem_width=32, downsample="avg", attention="se"),
    "seresnext50_32x4d": _bottleneck.replace(groups=32, width_per_group=4, attention="se"),
    # timm's ECA ResNets: efficient channel attention in every block.
    "ecaresnet26t": _timm_t.replace(layers=(2, 2, 2, 2), attention="eca"),
    "ecaresnet50t": _timm_t.replace(attention="eca"),
    "ecaresnet50d": _timm_d.replace(attention="eca"),
    "ecaresnet101d": _timm_d.replace(layers=(3, 4, 23, 3), attention="eca"),
    "ecaresnet269d": _timm_d.replace(layers=(3, 30, 48, 8), attention="eca"),
    "ecaresnetlight": _bottleneck.replace(layers=(1, 1, 11, 3), downsample="avg", attention="eca"),
    # Channel-pruned ECA-ResNet-D: every block's widths from timm's pruning file; the ECA kernels stay
    # those of the unpruned widths.
    "ecaresnet50d_pruned": _timm_d.replace(attention="eca", block_widths=ECARESNET50D_PRUNED_WIDTHS,
                                           eca_kernels=(5, 5, 5, 7)),
    "ecaresnet101d_pruned": _timm_d.replace(layers=(3, 4, 23, 3), attention="eca",
                                            block_widths=ECARESNET101D_PRUNED_WIDTHS, eca_kernels=(5, 5, 5, 7)),
    # timm's tiny test network: a block type and a base width per stage.
    "test_resnet": _basic.replace(layers=(1, 1, 1, 1), block_types=("basic", "basic", "bottleneck", "basic"),
                                  base_planes=32, planes=(32, 48, 48, 96), stem="deep", stem_width=16,
                                  downsample="avg"),
    # Anti-aliased downsampling (timm's aa_layer): a 2x2 average pool, or a binomial blur pool.
    "resnetaa50": _bottleneck.replace(anti_alias="avg"),
    "resnetaa50d": _timm_d.replace(anti_alias="avg"),
    "resnetaa101d": _timm_d.replace(layers=(3, 4, 23, 3), anti_alias="avg"),
    "resnetblur50": _bottleneck.replace(anti_alias="blur"),
    "seresnextaa101d_32x8d": _timm_d.replace(layers=(3, 4, 23, 3), groups=32, width_per_group=8, anti_alias="avg",
                                             attention="se"),
    "seresnextaa201d_32x8d": _timm_d.replace(layers=(3, 24, 36, 4), groups=32, width_per_group=8, stem_width=64,
                                             anti_alias="avg", attention="se"),
    # ResNet-RS: a "d" network whose stem max-pool is a strided conv, with SE (ratio 1/4).
    **{f"resnetrs{depth}": _timm_d.replace(layers=layers, replace_stem_pool=True, attention="se", se_ratio=0.25)
       for depth, layers in RESNET_RS_LAYERS.items()},
    # The legacy SENet-154 in timm's ResNet: deep 64-wide stem, 64 groups, halved first convs, 3x3 projections.
    "senet154": _bottleneck.replace(layers=(3, 8, 36, 3), groups=64, width_per_group=4, stem="deep",
                                    reduce_first=2, down_kernel_size=3, attention="se"),
    # timm's other norms: GroupNorm in a post-activation ResNet, and pre-activation "d" networks with
    # GroupNorm, EvoNorm-S0 and FilterResponseNorm (each with its activation fused, 32 groups, eps 1e-5).
    "resnet50_gn": _bottleneck.replace(norm="group"),
    "resnetv2_50d_gn": _preact_d.replace(norm="group"),
    "resnetv2_50d_evos": _preact_d.replace(norm="evo_s0"),
    "resnetv2_50d_frn": _preact_d.replace(norm="frn"),
    # Big Transfer (BiT): weight-standardised convs (eps 1e-8), GroupNorm, the 'fixed' stem (zero-padded
    # max-pool), every width times the width factor.
    **{f"resnetv2_{depth}x{factor}_bit": _bit.replace(layers=layers, stem_width=64 * factor, base_planes=64 * factor)
       for depth, layers in ((50, (3, 4, 6, 3)), (101, (3, 4, 23, 3)), (152, (3, 8, 36, 3)))
       for factor in ((1, 3) if depth < 152 else (2, 4))},
    # Small enough for fast tests and a quick first look, yet every structural rule shows up:
    # projection and identity shortcuts, strides in three stages, a grouped 3x3.
    "tiny_resnext": _bottleneck.replace(
        layers=(1, 2, 1, 1), groups=4, width_per_group=16, stem_width=16, base_planes=16, num_classes=10
    ),
}.items():
    register_spec(_name, _spec)

# timm's SKNet (its sknet module): selective-kernel blocks, 3x3 and 5x5 (a 3x3 dilated by 2) paths mixed by
# attention; the basic networks split each conv's input over its paths (timm's sk_kwargs, per architecture).
SKNET_PRESETS = ("skresnet18", "skresnet34", "skresnext50_32x4d")
_sk_basic = _basic.replace(block_spec=SKBasic(rd_ratio=1 / 8, rd_divisor=16, split_input=True))
for _name, _spec in {
    "skresnet18": _sk_basic,
    "skresnet34": _sk_basic.replace(layers=(3, 4, 6, 3)),
    "skresnext50_32x4d": _bottleneck.replace(block_spec=SKBottleneck(groups=32, width_per_group=4, rd_ratio=1 / 16,
                                                                     rd_divisor=32, split_input=False)),
}.items():
    register_spec(_name, _spec)

# timm's ECA, anti-aliased, ResNet-RS and SENet-154 architectures
TIMM_BLOCK_PRESETS = (
    "ecaresnet26t", "ecaresnet50t", "ecaresnet50d", "ecaresnet101d", "ecaresnet269d", "ecaresnetlight",
    "ecaresnet50d_pruned", "ecaresnet101d_pruned", "test_resnet",
    "resnetaa50", "resnetaa50d", "resnetaa101d", "resnetblur50", "seresnextaa101d_32x8d", "seresnextaa201d_32x8d",
    *(f"resnetrs{depth}" for depth in RESNET_RS_LAYERS), "senet154",
)

TIMM_PRESETS = (
    "resnet18d", "resnet26d", "resnet26t", "resnet34d", "resnet50d", "resnet101d", "resnext50d_32x4d",
    "seresnet50", "seresnext26d_32x4d", "seresnext50_32x4d", "resnet50_gn", "resnetv2_50d_gn", "resnetv2_50d_evos",
    "resnetv2_50d_frn", "resnetv2_50x1_bit", "resnetv2_50x3_bit", "resnetv2_101x1_bit", "resnetv2_101x3_bit",
    "resnetv2_152x2_bit", "resnetv2_152x4_bit", *TIMM_BLOCK_PRESETS, *SKNET_PRESETS,
)

# timm's Res2Net / Res2NeXt (timm.models.res2net): Bottle2neck blocks, {base width}w_{scale}s.
_res2net = _bottleneck.replace(block_spec=Res2Net(width_per_group=26, scale=4))
for _name, _spec in {
    "res2net50_26w_4s": _res2net,
    "res2net101_26w_4s": _res2net.replace(layers=(3, 4, 23, 3)),
    "res2net50_26w_6s": _res2net.replace(block_spec=Res2Net(width_per_group=26, scale=6)),
    "res2net50_26w_8s": _res2net.replace(block_spec=Res2Net(width_per_group=26, scale=8)),
    "res2net50_48w_2s": _res2net.replace(block_spec=Res2Net(width_per_group=48, scale=2)),
    "res2net50_14w_8s": _res2net.replace(block_spec=Res2Net(width_per_group=14, scale=8)),
    "res2next50": _res2net.replace(block_spec=Res2Net(groups=8, width_per_group=4, scale=4)),
    "res2net50d": _res2net.replace(**_d_stem),
    "res2net101d": _res2net.replace(layers=(3, 4, 23, 3), **_d_stem),
}.items():
    register_spec(_name, _spec)

TIMM_RES2NET_PRESETS = (
    "res2net50_14w_8s", "res2net50_26w_4s", "res2net50_26w_6s", "res2net50_26w_8s", "res2net50_48w_2s",
    "res2net50d", "res2net101_26w_4s", "res2net101d", "res2next50",
)
TIMM_PRESETS = (*TIMM_PRESETS, *TIMM_RES2NET_PRESETS)

KERAS_APPLICATIONS_PRESETS = (
    "keras_resnet50", "keras_resnet101", "keras_resnet152", "keras_resnet50v2", "keras_resnet101v2",
    "keras_resnet152v2",
)

TORCHVISION_PRESETS = (
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d",
    "resnext101_32x8d", "resnext101_64x4d", "wide_resnet50_2", "wide_resnet101_2",
)

# timm's ResNeSt (split attention, radix 2 unless named "Ns"; avd pools; deep stem, average-pool shortcuts):
# "d" has a 32-wide stem, "e" a 64-wide one; "1s4x24d" is radix 1 (a sigmoid gate), cardinality 4, width 24.
_resnest = _timm_d.replace(block_spec=ResNeSt(radix=2, avd=True))
RESNEST_PRESETS = (
    "resnest14d", "resnest26d", "resnest50d", "resnest50d_1s4x24d", "resnest50d_4s2x40d", "resnest101e",
    "resnest200e", "resnest269e",
)
for _name, _spec in {
    "resnest14d": _resnest.replace(layers=(1, 1, 1, 1)),
    "resnest26d": _resnest.replace(layers=(2, 2, 2, 2)),
    "resnest50d": _resnest,
    "resnest50d_1s4x24d": _resnest.replace(block_spec=ResNeSt(groups=4, width_per_group=24, radix=1, avd=True,
                                                              avd_first=True)),
    "resnest50d_4s2x40d": _resnest.replace(block_spec=ResNeSt(groups=2, width_per_group=40, radix=4, avd=True,
                                                              avd_first=True)),
    "resnest101e": _resnest.replace(layers=(3, 4, 23, 3), stem_width=64),
    "resnest200e": _resnest.replace(layers=(3, 24, 36, 3), stem_width=64),
    "resnest269e": _resnest.replace(layers=(3, 30, 48, 8), stem_width=64),
}.items():
    register_spec(_name, _spec)
