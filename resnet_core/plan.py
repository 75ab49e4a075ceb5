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
from .spec import EXPANSION, ResNetSpec


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
    zero_init: bool = False  # kernel starts at 0 (zero_init_residual on a pre-activation block's last conv)


@dataclass(frozen=True)
class Norm:
    name: str
    channels: int
    eps: float
    momentum: float  # PyTorch convention
    zero_init: bool = False  # gamma starts at 0 (torchvision's zero_init_residual)


@dataclass(frozen=True)
class ConvNorm:
    """conv -> batch norm -> optional ReLU; pre-activation networks also have bare convs (norm None)."""

    conv: Conv
    norm: Norm | None
    relu: bool


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    pad_value: float = -math.inf  # PyTorch pads with -inf; keras.applications V2's stem pads with zeros


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
    """A residual block: ``relu(se(main(x)) + shortcut(x))``; the last main unit has no ReLU.

    Pre-activation blocks first compute ``p = relu(pre_norm(x))``, feed ``p`` to the main path (and to
    the projection when ``shortcut_preact``), and add without the final ReLU (``relu_out`` False).
    """

    name: str  # e.g. "layer2.0"
    stage: int  # 1-based, as torchvision's layer1..layer4
    index: int  # position inside the stage
    in_channels: int
    out_channels: int
    stride: int
    main: tuple[ConvNorm, ...]
    shortcut: ConvNorm | None  # None: identity (or only shortcut_pool)
    shortcut_pool: AvgPool | MaxPool | None = None  # before the shortcut conv; a 1x1 MaxPool subsamples
    attention: SqueezeExcite | None = None  # after the last main unit
    pre_norm: Norm | None = None
    shortcut_preact: bool = False
    relu_out: bool = True


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
    norm: Norm | None = None  # pre-activation networks: relu(norm(x)) after the last block


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
        for item in self.modules():
            out.extend(_conv_params(item) if isinstance(item, Conv) else _norm_params(item))
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

    def modules(self) -> list[Conv | Norm]:
        """Every conv and norm, in state_dict order (per block: pre-norm, main, attention, shortcut)."""
        items: list[Conv | Norm] = _flat(self.stem.units)
        for block in self.blocks:
            if block.pre_norm is not None:
                items.append(block.pre_norm)
            items += _flat(block.main)
            if block.attention is not None:
                items += [block.attention.fc1, block.attention.fc2]
            if block.shortcut is not None:
                items += _flat((block.shortcut,))
        if self.head.norm is not None:
            items.append(self.head.norm)
        return items

    def norms(self) -> list[Norm]:
        return [m for m in self.modules() if isinstance(m, Norm)]

    def norm_sizes(self, height: int, width: int) -> dict[str, tuple[int, int]]:
        """Spatial size (H, W) of every batch norm's input, by norm name, for a ``height`` x ``width`` image."""
        sizes = self.module_sizes(height, width)
        return {n.name: sizes[n.name] for n in self.norms()}

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Spatial size (H, W) of the last feature map (before any pooling)."""
        return self._sizes(height, width)[1]

    def module_sizes(self, height: int, width: int) -> dict[str, tuple[int, int]]:
        """Spatial size (H, W) of the output of every conv and norm in :meth:`modules`, by name."""
        return self._sizes(height, width)[0]

    def _sizes(self, height: int, width: int) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
        sizes: dict[str, tuple[int, int]] = {}

        def units(hw: tuple[int, int], items: tuple[ConvNorm, ...]) -> tuple[int, int]:
            for unit in items:
                hw = sizes[unit.conv.name] = _conv_size(hw, unit.conv)
                if unit.norm is not None:
                    sizes[unit.norm.name] = hw
            return hw

        hw = units((height, width), self.stem.units)
        if self.stem.pool is not None:
            hw = _pool_size(hw, self.stem.pool)
        for block in self.blocks:
            if block.pre_norm is not None:
                sizes[block.pre_norm.name] = hw
            out = units(hw, block.main)
            if block.attention is not None:  # squeeze-and-excitation runs on the pooled 1x1 map
                sizes[block.attention.fc1.name] = sizes[block.attention.fc2.name] = (1, 1)
            if block.shortcut is not None:
                pool = block.shortcut_pool
                units(hw if pool is None else _pool_size(hw, pool), (block.shortcut,))
            hw = out
        if self.head.norm is not None:
            sizes[self.head.norm.name] = hw
        return sizes, hw

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Each stage's output channels, in order (exporters' hidden_sizes / channels)."""
        return tuple(self.stage_blocks(s)[-1].out_channels for s in range(1, self.num_stages + 1))

    def stage_blocks(self, stage: int) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.stage == stage)

    @property
    def num_stages(self) -> int:
        return len(self.spec.layers)

    @property
    def taps(self) -> tuple[str, ...]:
        """Points where adapters expose intermediate outputs, in network order.

        "stem", then every block by canonical name ("layer1.0", ...), then "norm" (pre-activation
        networks' final norm and ReLU), "pool" and "logits" when the model has them. Parity reports
        compare these, so a bug is located at its first tap.
        """
        taps = ["stem", *(b.name for b in self.blocks)]
        if self.head.norm is not None:
            taps.append(self.head.norm.name)
        if self.head.pool is not None:
            taps.append("pool")
        if self.head.fc is not None:
            taps.append("logits")
        return tuple(taps)

    @property
    def feature_taps(self) -> tuple[str, ...]:
        """The last block of every stage: C2..C5 for a four-stage network."""
        return tuple(self.stage_blocks(s)[-1].name for s in range(1, self.num_stages + 1))


def _flat(units: tuple[ConvNorm, ...]) -> list[Conv | Norm]:
    return [m for u in units for m in (u.conv, u.norm) if m is not None]


def _out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_size(hw: tuple[int, int], c: Conv) -> tuple[int, int]:
    return _out(hw[0], c.kernel_size, c.stride, c.padding, c.dilation), \
        _out(hw[1], c.kernel_size, c.stride, c.padding, c.dilation)


def _pool_size(hw: tuple[int, int], pool: MaxPool | AvgPool) -> tuple[int, int]:
    k, s = pool.kernel_size, pool.stride
    if isinstance(pool, MaxPool):
        return _out(hw[0], k, s, pool.padding), _out(hw[1], k, s, pool.padding)
    if pool.mode == "same":  # padded by k-1 after each edge
        return (hw[0] - 1) // s + 1, (hw[1] - 1) // s + 1
    # ceil_mode: a last, partial window counts if it starts inside the input (PyTorch's rule)
    sized = [-(-(v - k) // s) + 1 for v in hw]
    h, w = (n - 1 if (n - 1) * s >= v else n for n, v in zip(sized, hw, strict=True))
    return h, w


def _param(module: str, role: str, shape: tuple[int, ...], layout: Layout, init: str) -> Param:
    return Param(f"{module}.{CANONICAL_SUFFIX[role]}", module, role, tuple(shape), layout, init)


def _conv_params(conv: Conv) -> list[Param]:
    shape = (conv.out_channels, conv.in_channels // conv.groups, conv.kernel_size, conv.kernel_size)
    params = [_param(conv.name, "kernel", shape, Layout.CONV, "zeros" if conv.zero_init else "kaiming_normal_fan_out")]
    if conv.bias:
        params.append(_param(conv.name, "bias", (conv.out_channels,), Layout.SAME, "zeros"))
    return params


def bottleneck_width(planes: int, width_per_group: int, groups: int) -> int:
    """Channels of a bottleneck's 3x3 conv (torchvision's rule)."""
    return int(planes * (width_per_group / 64.0)) * groups


def stage_planes(base_planes: int, num_stages: int) -> tuple[int, ...]:
    """Each stage's base width (planes), doubled per stage; a block's output is ``EXPANSION[block]`` times it."""
    return tuple(base_planes * 2**s for s in range(num_stages))


def planes_of(out_channels: int, block: str) -> int:
    """The inverse of ``planes * EXPANSION[block]``, for importers reading a block's output width."""
    return out_channels // EXPANSION[block]


def tiered_stem_width(stem_width: int) -> int:
    """The first conv's width in timm's 'deep_tiered' stem (3/4 of the stem width, rounded down to 3 * k)."""
    return 3 * (stem_width // 4)


def width_per_group_of(width: int, groups: int, planes: int) -> int:
    """The inverse of :func:`bottleneck_width`, for importers reading a 3x3 conv's width."""
    return (width // groups) * 64 // max(1, planes)


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


def _unit(spec: ResNetSpec, prefix: str, conv_name: str, norm_name: str | None, cin: int, cout: int, k: int,
          stride: int = 1, groups: int = 1, relu: bool = True, zero_init: bool = False,
          dilation: int = 1) -> ConvNorm:
    """A conv and the norm after it (none when ``norm_name`` is None); ``zero_init`` zeroes the last of the two."""
    dilation = dilation if k > 1 else 1
    # Pre-activation networks bias only the convs no norm follows (keras.applications V2).
    bias = spec.conv_bias and (norm_name is None or not spec.preact)
    conv = Conv(
        name=f"{prefix}{conv_name}", in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
        padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=bias,
        zero_init=zero_init and norm_name is None,
    )
    norm = None if norm_name is None else Norm(
        name=f"{prefix}{norm_name}", channels=cout, eps=spec.bn_eps, momentum=spec.bn_momentum, zero_init=zero_init)
    return ConvNorm(conv, norm, relu)


def _norm(spec: ResNetSpec, name: str, channels: int) -> Norm:
    return Norm(name=name, channels=channels, eps=spec.bn_eps, momentum=spec.bn_momentum)


def _main(spec: ResNetSpec, prefix: str, cin: int, planes: int, stride: int, first_dilation: int,
          dilation: int) -> tuple[ConvNorm, ...]:
    """The main path. Post-activation names are torchvision's (conv1, bn1, ...); pre-activation ones
    timm's ResNetV2 (norm1 is the block's pre-norm, the norm after conv{i} is norm{i+1}, the last conv bare)."""
    cout = planes * spec.expansion
    zero = spec.zero_init_residual
    pre = spec.preact
    norm = (lambda i: f"norm{i + 1}") if pre else (lambda i: f"bn{i}")  # noqa: E731
    if spec.block == "basic":
        return (
            _unit(spec, prefix, "conv1", norm(1), cin, planes, 3, stride=stride, dilation=first_dilation),
            _unit(spec, prefix, "conv2", None if pre else norm(2), planes, planes, 3, relu=False, zero_init=zero,
                  dilation=dilation),
        )
    width = bottleneck_width(planes, spec.width_per_group, spec.groups)
    s1, s3 = (stride, 1) if spec.stride_in_1x1 else (1, stride)
    return (
        _unit(spec, prefix, "conv1", norm(1), cin, width, 1, stride=s1),
        _unit(spec, prefix, "conv2", norm(2), width, width, 3, stride=s3, groups=spec.groups,
              dilation=first_dilation),
        _unit(spec, prefix, "conv3", None if pre else norm(3), width, cout, 1, relu=False, zero_init=zero),
    )


def _block(spec: ResNetSpec, stage: int, index: int, cin: int, planes: int, stride: int,
           first_dilation: int, dilation: int) -> Block:
    """One block; ``first_dilation`` is the previous stage's dilation (timm and torchvision agree)."""
    prefix = f"layer{stage}.{index}."
    cout = planes * spec.expansion
    block_stride = stride
    main = _main(spec, prefix, cin, planes, stride, first_dilation, dilation)
    attention = None
    if spec.attention == "se":
        reduced = make_divisible(cout * spec.se_ratio)
        attention = SqueezeExcite(
            f"{prefix}se",
            Conv(f"{prefix}se.fc1", cout, reduced, 1, bias=True),
            Conv(f"{prefix}se.fc2", reduced, cout, 1, bias=True),
        )
    shortcut = pool = None
    # The shortcut rule, the only place it is written. A change of width projects; a stride alone
    # projects too, except with stride_block="last", whose shortcut only subsamples (keras.applications V2).
    if stride != 1 and cin == cout and spec.stride_block == "last":
        pool = MaxPool(f"{prefix}downsample.pool", kernel_size=1, stride=stride, padding=0)
    elif stride != 1 or cin != cout:
        # Pre-activation projections are a bare conv (timm's DownsampleConv/DownsampleAvg with preact).
        names = ("downsample.pool", "downsample.conv", None) if spec.preact else \
            ("downsample.0", "downsample.1", "downsample.2") if spec.downsample == "avg" else \
            (None, "downsample.0", "downsample.1")
        if spec.downsample == "avg":
            if stride != 1:
                pool = AvgPool(f"{prefix}{names[0]}", 2, stride, "ceil")
            elif dilation != 1:
                pool = AvgPool(f"{prefix}{names[0]}", 2, 1, "same")
            stride = 1
        shortcut = _unit(spec, prefix, names[1], names[2], cin, cout, 1, stride=stride, relu=False)
    pre_norm = _norm(spec, f"{prefix}norm1", cin) if spec.preact else None
    return Block(prefix[:-1], stage, index, cin, cout, block_stride, main, shortcut, pool, attention, pre_norm,
                 shortcut_preact=spec.preact and shortcut is not None, relu_out=not spec.preact)


def _stem(spec: ResNetSpec) -> Stem:
    last_norm = None if spec.preact else "bn1"  # pre-activation: the first block's norm1 follows
    relu = not spec.preact
    if spec.stem == "7x7":
        units = (_unit(spec, "", "conv1", last_norm, spec.in_channels, spec.stem_width, 7, stride=2, relu=relu),)
        out = spec.stem_width
    else:  # timm's deep stems: three 3x3 convs in a Sequential named conv1, the last norm is bn1
        out = 2 * spec.stem_width
        first = tiered_stem_width(spec.stem_width) if spec.stem == "deep_tiered" else spec.stem_width
        units = (
            _unit(spec, "", "conv1.0", "conv1.1", spec.in_channels, first, 3, stride=2),
            _unit(spec, "", "conv1.3", "conv1.4", first, spec.stem_width, 3),
            _unit(spec, "", "conv1.6", last_norm, spec.stem_width, out, 3, relu=relu),
        )
    pool = None
    if spec.stem_pool:
        pool = MaxPool("maxpool", pad_value=-math.inf if spec.stem_pool_padding == "-inf" else 0.0)
    return Stem(units, pool, out)


def _strides(spec: ResNetSpec, stem_stride: int) -> list[tuple[list[int], int]]:
    """Per stage: the stride of each block and the stage's dilation."""
    out = []
    net_stride, dilation = stem_stride, 1
    for s, depth in enumerate(spec.layers):
        stride = 1 if s == 0 else 2
        if net_stride >= spec.output_stride:  # past the output stride: dilate instead of striding
            dilation *= stride
            stride = 1
        else:
            net_stride *= stride
        out.append(([stride] + [1] * (depth - 1), dilation))
    if spec.stride_block == "last":  # each stage's stride moves to the previous stage's last block
        moved = [following[0][0] for following in out[1:]] + [1]
        out = [([1] * (len(strides) - 1) + [stride], d) for (strides, d), stride in zip(out, moved, strict=True)]
    return out


def make_plan(spec: ResNetSpec) -> Plan:
    """The structure of ``spec``: blocks, strides, shortcuts, channels and canonical names."""
    # Specs compare equal whatever their name; the cache key includes it so plan.spec keeps its own.
    return _make_plan(spec, spec.name)


@functools.lru_cache(maxsize=64)
def _make_plan(spec: ResNetSpec, name: str) -> Plan:
    stem = _stem(spec)
    blocks: list[Block] = []
    cin = stem.out_channels
    prev_dilation = 1
    planes_per_stage = stage_planes(spec.base_planes, len(spec.layers))
    for s, (strides, dilation) in enumerate(_strides(spec, 4 if stem.pool is not None else 2)):
        planes = planes_per_stage[s]
        for i, stride in enumerate(strides):
            block = _block(spec, s + 1, i, cin, planes, stride, prev_dilation, dilation)
            blocks.append(block)
            prev_dilation = dilation
            cin = block.out_channels
    norm = _norm(spec, "norm", cin) if spec.preact else None
    if spec.include_top:
        head = Head("avg", Dense("fc", cin, spec.num_classes), spec.num_classes, norm)
    else:
        head = Head(spec.pooling, None, cin, norm)
    return Plan(spec, stem, tuple(blocks), head)
