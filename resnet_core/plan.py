"""The plan: every structural decision computed once from a spec, before any framework is touched.

Adapters walk a :class:`Plan` and emit framework layers; they never decide where a stride, a
projection shortcut or a name goes. The weight table (:attr:`Plan.params`) is derived from the same
entries, so the model and its conversion cannot disagree.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

from .layouts import Layout
from .spec import ResNetSpec


@dataclass(frozen=True)
class Conv:
    name: str  # canonical module path, e.g. "layer2.0.conv2"
    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int = 1
    padding: int = 0  # symmetric, PyTorch semantics; Keras adapters pad explicitly
    dilation: int = 1
    groups: int = 1
    bias: bool = False


@dataclass(frozen=True)
class Norm:
    name: str
    channels: int
    eps: float
    momentum: float  # PyTorch convention
    zero_init: bool = False  # gamma starts at 0 (torchvision's zero_init_residual)


@dataclass(frozen=True)
class ConvNorm:
    """conv -> batch norm -> optional ReLU."""

    conv: Conv
    norm: Norm
    relu: bool


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1  # padded with -inf, as PyTorch does


@dataclass(frozen=True)
class AvgPool:
    """Average pooling on a projection shortcut (timm's "d" variants), with PyTorch's exact edges.

    ``ceil``: ceil_mode=True, count_include_pad=False (stride 2; odd sizes average the valid pixels).
    ``same``: zero padding after each spatial edge, counted in the mean (timm's AvgPool2dSame, used
    at stride 1 when the stage is dilated).
    """

    name: str
    kernel_size: int
    stride: int
    mode: str  # "ceil" | "same"


@dataclass(frozen=True)
class SqueezeExcite:
    """x * sigmoid(fc2(relu(fc1(mean(x))))), fc1/fc2 being biased 1x1 convs (timm's SEModule)."""

    name: str
    fc1: Conv
    fc2: Conv


@dataclass(frozen=True)
class Block:
    """A residual block: ``relu(se(main(x)) + shortcut(x))``; the last main unit has no ReLU."""

    name: str  # e.g. "layer2.0"
    stage: int  # 1-based, as torchvision's layer1..layer4
    index: int  # position inside the stage
    in_channels: int
    out_channels: int
    stride: int
    main: tuple[ConvNorm, ...]
    shortcut: ConvNorm | None  # None: identity
    shortcut_pool: AvgPool | None = None  # before the shortcut conv
    attention: SqueezeExcite | None = None  # after the last main unit


@dataclass(frozen=True)
class Stem:
    units: tuple[ConvNorm, ...]
    pool: MaxPool | None
    out_channels: int


@dataclass(frozen=True)
class Dense:
    name: str
    in_features: int
    out_features: int


@dataclass(frozen=True)
class Head:
    pool: str | None  # "avg" | "max" | None (feature map out)
    fc: Dense | None
    out_channels: int


@dataclass(frozen=True)
class Param:
    """One canonical tensor: its name, the module it belongs to, its role there and its layout."""

    name: str  # canonical (torchvision state_dict) name, e.g. "layer1.0.bn1.running_var"
    module: str
    role: str  # kernel | bias | gamma | beta | moving_mean | moving_variance
    shape: tuple[int, ...]  # canonical (PyTorch) layout
    layout: Layout
    init: str  # kaiming_normal_fan_out | linear_uniform | zeros | ones

    @property
    def trainable(self) -> bool:
        return self.role not in ("moving_mean", "moving_variance")

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# Canonical tensor suffix of each role: the PyTorch attribute names, which torchvision checkpoints use.
CANONICAL_SUFFIX = {
    "kernel": "weight",
    "bias": "bias",
    "gamma": "weight",
    "beta": "bias",
    "moving_mean": "running_mean",
    "moving_variance": "running_var",
}


@dataclass(frozen=True)
class Plan:
    spec: ResNetSpec
    stem: Stem
    blocks: tuple[Block, ...]
    head: Head

    @functools.cached_property
    def params(self) -> tuple[Param, ...]:
        """Every canonical tensor in state_dict order."""
        out: list[Param] = []
        for item in self.weighted():
            if isinstance(item, ConvNorm):
                out.extend(_conv_params(item.conv))
                out.extend(_norm_params(item.norm))
            else:
                out.extend(_conv_params(item))
        if self.head.fc is not None:
            fc = self.head.fc
            out.append(_param(fc.name, "kernel", (fc.out_features, fc.in_features), Layout.DENSE, "linear_uniform"))
            out.append(_param(fc.name, "bias", (fc.out_features,), Layout.SAME, "linear_uniform"))
        return tuple(out)

    @functools.cached_property
    def param_index(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def num_params(self) -> int:
        """Trainable parameters (torchvision counts these; BN running statistics are buffers)."""
        return sum(p.size for p in self.params if p.trainable)

    def weighted(self) -> list[ConvNorm | Conv]:
        """Every entry that owns tensors, in state_dict order (per block: main, attention, shortcut)."""
        items: list[ConvNorm | Conv] = list(self.stem.units)
        for block in self.blocks:
            items.extend(block.main)
            if block.attention is not None:
                items.extend((block.attention.fc1, block.attention.fc2))
            if block.shortcut is not None:
                items.append(block.shortcut)
        return items

    def stage_blocks(self, stage: int) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.stage == stage)

    @property
    def num_stages(self) -> int:
        return len(self.spec.layers)

    @property
    def taps(self) -> tuple[str, ...]:
        """Points where adapters expose intermediate outputs, in network order.

        "stem", then every block by canonical name ("layer1.0", ...), then "pool" and "logits" when
        the model has them. Parity reports compare these, so a bug is located at its first tap.
        """
        taps = ["stem", *(b.name for b in self.blocks)]
        if self.head.pool is not None:
            taps.append("pool")
        if self.head.fc is not None:
            taps.append("logits")
        return tuple(taps)

    @property
    def feature_taps(self) -> tuple[str, ...]:
        """The last block of every stage: C2..C5 for a four-stage network."""
        return tuple(self.stage_blocks(s)[-1].name for s in range(1, self.num_stages + 1))


def _param(module: str, role: str, shape: tuple[int, ...], layout: Layout, init: str) -> Param:
    return Param(f"{module}.{CANONICAL_SUFFIX[role]}", module, role, tuple(shape), layout, init)


def _conv_params(conv: Conv) -> list[Param]:
    shape = (conv.out_channels, conv.in_channels // conv.groups, conv.kernel_size, conv.kernel_size)
    params = [_param(conv.name, "kernel", shape, Layout.CONV, "kaiming_normal_fan_out")]
    if conv.bias:
        params.append(_param(conv.name, "bias", (conv.out_channels,), Layout.SAME, "zeros"))
    return params


def make_divisible(value: float, divisor: int = 8) -> int:
    """timm's rounding of reduced widths (round_limit=0: never bumped up for rounding down)."""
    return max(divisor, int(value + divisor / 2) // divisor * divisor)


def _norm_params(norm: Norm) -> list[Param]:
    c = (norm.channels,)
    return [
        _param(norm.name, "gamma", c, Layout.SAME, "zeros" if norm.zero_init else "ones"),
        _param(norm.name, "beta", c, Layout.SAME, "zeros"),
        _param(norm.name, "moving_mean", c, Layout.SAME, "zeros"),
        _param(norm.name, "moving_variance", c, Layout.SAME, "ones"),
    ]


def _unit(spec: ResNetSpec, prefix: str, conv_name: str, norm_name: str, cin: int, cout: int, k: int,
          stride: int = 1, groups: int = 1, relu: bool = True, zero_init: bool = False,
          dilation: int = 1) -> ConvNorm:
    dilation = dilation if k > 1 else 1
    conv = Conv(
        name=f"{prefix}{conv_name}", in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
        padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=spec.conv_bias,
    )
    norm = Norm(name=f"{prefix}{norm_name}", channels=cout, eps=spec.bn_eps, momentum=spec.bn_momentum,
                zero_init=zero_init)
    return ConvNorm(conv, norm, relu)


def _block(spec: ResNetSpec, stage: int, index: int, cin: int, planes: int, stride: int,
           first_dilation: int, dilation: int) -> Block:
    """One block; ``first_dilation`` is the previous stage's dilation (timm and torchvision agree)."""
    prefix = f"layer{stage}.{index}."
    cout = planes * spec.expansion
    zero = spec.zero_init_residual
    if spec.block == "basic":
        main = (
            _unit(spec, prefix, "conv1", "bn1", cin, planes, 3, stride=stride, dilation=first_dilation),
            _unit(spec, prefix, "conv2", "bn2", planes, planes, 3, relu=False, zero_init=zero, dilation=dilation),
        )
    else:
        width = int(planes * (spec.width_per_group / 64.0)) * spec.groups
        s1, s3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
        main = (
            _unit(spec, prefix, "conv1", "bn1", cin, width, 1, stride=s1),
            _unit(spec, prefix, "conv2", "bn2", width, width, 3, stride=s3, groups=spec.groups,
                  dilation=first_dilation),
            _unit(spec, prefix, "conv3", "bn3", width, cout, 1, relu=False, zero_init=zero),
        )
    attention = None
    if spec.attention == "se":
        reduced = make_divisible(cout * spec.se_ratio)
        attention = SqueezeExcite(
            f"{prefix}se",
            Conv(f"{prefix}se.fc1", cout, reduced, 1, bias=True),
            Conv(f"{prefix}se.fc2", reduced, cout, 1, bias=True),
        )
    shortcut = pool = None
    # The projection rule, the only place it is written: a stride, or a change of width.
    if stride != 1 or cin != cout:
        if spec.downsample == "avg":
            if stride != 1:
                pool = AvgPool(f"{prefix}downsample.0", 2, stride, "ceil")
            elif dilation != 1:
                pool = AvgPool(f"{prefix}downsample.0", 2, 1, "same")
            shortcut = _unit(spec, prefix, "downsample.1", "downsample.2", cin, cout, 1, relu=False)
        else:
            shortcut = _unit(spec, prefix, "downsample.0", "downsample.1", cin, cout, 1, stride=stride, relu=False)
    return Block(prefix[:-1], stage, index, cin, cout, stride, main, shortcut, pool, attention)


def _stem(spec: ResNetSpec) -> Stem:
    if spec.stem == "7x7":
        units = (_unit(spec, "", "conv1", "bn1", spec.in_channels, spec.stem_width, 7, stride=2),)
        out = spec.stem_width
    else:  # timm's deep stems: three 3x3 convs in a Sequential named conv1, the last norm is bn1
        out = 2 * spec.stem_width
        first = 3 * (spec.stem_width // 4) if spec.stem == "deep_tiered" else spec.stem_width
        units = (
            _unit(spec, "", "conv1.0", "conv1.1", spec.in_channels, first, 3, stride=2),
            _unit(spec, "", "conv1.3", "conv1.4", first, spec.stem_width, 3),
            _unit(spec, "", "conv1.6", "bn1", spec.stem_width, out, 3),
        )
    return Stem(units, MaxPool("maxpool") if spec.stem_pool else None, out)


def make_plan(spec: ResNetSpec) -> Plan:
    """The structure of ``spec``: blocks, strides, shortcuts, channels and canonical names."""
    # Specs compare equal whatever their name; the cache key includes it so plan.spec keeps its own.
    return _make_plan(spec, spec.name)


@functools.lru_cache(maxsize=64)
def _make_plan(spec: ResNetSpec, name: str) -> Plan:
    stem = _stem(spec)
    blocks: list[Block] = []
    cin = stem.out_channels
    net_stride = 4 if stem.pool is not None else 2
    dilation = prev_dilation = 1
    for s, depth in enumerate(spec.layers):
        planes = spec.base_planes * 2**s
        stride = 1 if s == 0 else 2
        if net_stride >= spec.output_stride:  # past the output stride: dilate instead of striding
            dilation *= stride
            stride = 1
        else:
            net_stride *= stride
        for i in range(depth):
            block = _block(spec, s + 1, i, cin, planes, stride if i == 0 else 1, prev_dilation, dilation)
            blocks.append(block)
            prev_dilation = dilation
            cin = block.out_channels
    if spec.include_top:
        head = Head("avg", Dense("fc", cin, spec.num_classes), spec.num_classes)
    else:
        head = Head(spec.pooling, None, cin)
    return Plan(spec, stem, tuple(blocks), head)
