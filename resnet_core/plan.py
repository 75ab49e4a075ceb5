"""The plan: every structural decision computed once from a spec, before any framework is touched.

Adapters walk a :class:`Plan` and emit framework layers; they never decide where a stride, a
projection shortcut or a name goes. The weight table (:attr:`Plan.params`) is derived from the same
entries, so the model and its conversion cannot disagree.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import cast

from .drop_rates import drop_path_schedule
from .errors import InputError
from .layouts import Layout
from .spec import FUSED_NORMS, GROUPED_NORMS, ResNetSpec, SpecError
from .spec_parts import Basic, Res2Net, ResNeSt, SKBasic, SKBottleneck
from .spec_parts import Block as BlockSpec
from .spec_sknet import selective_kernel_paths, sk_attn_width
from .tensor_roles import (  # noqa: F401 - importers read NORM_ROLES from the plan; declared in tensor_roles
    CANONICAL_SUFFIX,
    KINDS,
    NORM_ROLES,
    ROLES,
)
from .widths import (  # noqa: F401 - importers read the width rules from the plan
    EXPANSION,
    bottleneck_width,
    eca_kernel_size,
    explicit_width_fields,
    main_widths,
    make_divisible,
    planes_of,
    resnest_attn_width,
    se_ratio_of,
    se_width,
    stage_planes,
    stem_widths,
    tiered_stem_width,
    width_per_group_fitting,
    width_per_group_of,
)


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
    standardize_eps: float | None = None  # weight standardisation in the forward (timm's StdConv2d); None: plain


@dataclass(frozen=True)
class Norm:
    """A normalisation layer; ``kind`` is ResNetSpec.norm, ``groups`` its group count ("group", "evo_s0").

    Batch and group norms are followed by a separate ReLU where the plan asks for one; the fused kinds
    ("evo_s0", "frn") compute their nonlinearity themselves and are only placed where one is wanted.
    """

    name: str
    channels: int
    eps: float
    momentum: float  # PyTorch convention (batch norm only)
    zero_init: bool = False  # gamma starts at 0 (torchvision's zero_init_residual)
    kind: str = "batch"
    groups: int = 1

    @property
    def fused_act(self) -> bool:
        """The nonlinearity is part of the norm: adapters add no ReLU after it."""
        return self.kind in FUSED_NORMS


@dataclass(frozen=True)
class AvgPool:
    """Average pooling with PyTorch's exact edges: on projection shortcuts (timm's "d" variants) and
    as anti-aliasing (timm's ``aa_layer=nn.AvgPool2d``).

    ``ceil``: ceil_mode=True, count_include_pad=False (stride 2; odd sizes average the valid pixels).
    ``same``: zero padding after each spatial edge, counted in the mean (timm's AvgPool2dSame, used
    at stride 1 when the stage is dilated).
    ``floor``: no padding, a last partial window dropped (``nn.AvgPool2d(2)``).
    ``pad``: zero padding of ``(kernel_size - 1) // 2`` on every edge, counted in the mean, floor
    (``nn.AvgPool2d(3, stride, padding=1)``: ResNeSt's avd pools).
    """

    name: str
    kernel_size: int
    stride: int
    mode: str  # "ceil" | "same" | "floor" | "pad"

    @property
    def padding(self) -> int:
        """Zero padding on every edge ("pad" mode only; the other modes pad as their docstring says)."""
        return (self.kernel_size - 1) // 2 if self.mode == "pad" else 0


@dataclass(frozen=True)
class BlurPool:
    """timm's BlurPool2d: pad (reflect or zeros), then a depthwise binomial filter at ``stride``.

    The filter is :func:`binomial_filter` of ``filter_size`` in each direction; it holds no weights.
    """

    name: str
    channels: int
    filter_size: int
    stride: int
    padding: int
    pad_mode: str  # "reflect" | "zeros"


def binomial_filter(size: int) -> tuple[float, ...]:
    """The 1D blur taps, C(n-1, k) / 2^(n-1) (timm's BlurPool2d; the 2D filter is their outer product)."""
    return tuple(math.comb(size - 1, k) / 2 ** (size - 1) for k in range(size))


def timm_padding(kernel_size: int, stride: int, dilation: int = 1) -> int:
    """timm's get_padding: symmetric padding of a (possibly strided) window."""
    return ((stride - 1) + dilation * (kernel_size - 1)) // 2


@dataclass(frozen=True)
class ConvNorm:
    """conv -> batch norm -> optional ReLU -> optional anti-aliasing pool (timm's ``aa``).

    Pre-activation networks also have bare convs (norm None).
    """

    conv: Conv
    norm: Norm | None
    relu: bool  # the unit is activated (by a separate ReLU or by its fused norm, see ``act``)
    pool: AvgPool | BlurPool | None = None

    @property
    def act(self) -> str | None:
        """How the unit is activated: "relu" (a separate ReLU after the norm, or after a bare conv),
        "fused" (the norm computes the nonlinearity itself: EvoNorm, FRN), or None (linear).

        The one place the fused-norm rule is applied; adapters add a ReLU exactly where this says "relu".
        """
        if not self.relu:
            return None
        return "fused" if self.norm is not None and self.norm.fused_act else "relu"


@dataclass(frozen=True)
class Mixer:
    """A main-path entry that is not a plain conv unit: a block type's own operator (ResNeSt's split attention,
    Res2Net's scales, SKNet's selective kernels). Subclasses are frozen dataclasses holding plan entries; they
    list their convs and norms (state_dict order) and compute their output size, so the weight table and the
    size checks need no case per block type. Adapters compile each subclass; the plan decides its structure."""

    name: str

    def modules(self) -> list[Conv | ChannelConv | Norm]:  # pragma: no cover - every subclass defines it
        raise NotImplementedError

    def sizes(self, hw: tuple[int, int], sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
        """The output size for an ``hw`` input; records the size of every named module it holds in ``sizes``."""
        raise NotImplementedError  # pragma: no cover - every subclass defines it


@dataclass(frozen=True)
class Res2NetScales(Mixer):
    """timm's Bottle2neck between its 1x1 convs: the input split into ``scale`` splits ``width`` wide; split ``i``
    (``i < len(convs)``) goes through ``convs[i]``, ``bns[i]`` and a ReLU, after adding the previous split's
    output (the cascade) unless ``first``; the last split passes, through ``pool`` when ``first``; the outputs
    are concatenated in split order. ``first`` is timm's ``is_first``: the block strides or has a downsample.

    Named after its block (``convs``/``bns`` are the block's own children in timm's state_dict).
    """

    width: int
    scale: int
    first: bool
    convs: tuple[Conv, ...]
    bns: tuple[Norm, ...]
    pool: AvgPool | None

    def modules(self) -> list[Conv | ChannelConv | Norm]:
        return [*self.convs, *self.bns]

    def sizes(self, hw: tuple[int, int], sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
        out = hw
        for conv, bn in zip(self.convs, self.bns, strict=True):
            out = sizes[conv.name] = sizes[bn.name] = _conv_size(hw, conv)
        if self.pool is not None:
            pooled = sizes[self.pool.name] = _pool_size(hw, self.pool)
            if pooled != out:  # pragma: no cover - a 3x3 pool padded by 1 sizes as the 3x3 conv at its stride
                raise InputError(f"{self.name}: the pooled split is {pooled}, the convolved splits {out}")
        return out


@dataclass(frozen=True)
class MaxPool:
    name: str
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    pad_value: float = -math.inf  # PyTorch pads with -inf; keras.applications V2's stem pads with zeros
    # The input is a ReLU's output (>= 0), so zero padding gives exactly what -inf padding gives: every
    # window holds at least one real value, and the max of non-negative values is never below 0.
    nonnegative_input: bool = False

    @property
    def zero_padding_exact(self) -> bool:
        """Whether padding with zeros computes this pool exactly (Keras's built-in ZeroPadding2D suffices)."""
        return self.padding == 0 or self.pad_value == 0.0 or self.nonnegative_input


@dataclass(frozen=True)
class SqueezeExcite:
    """x * sigmoid(fc2(relu(fc1(mean(x))))), fc1/fc2 being biased 1x1 convs (timm's SEModule)."""

    name: str
    fc1: Conv
    fc2: Conv


@dataclass(frozen=True)
class ChannelConv:
    """A bias-free 1D conv sliding across channels (ECA); canonical kernel shape (1, 1, kernel_size)."""

    name: str
    kernel_size: int

    @property
    def padding(self) -> int:
        return (self.kernel_size - 1) // 2


@dataclass(frozen=True)
class EfficientChannelAttention:
    """x * sigmoid(conv1d(mean(x))) across the channel axis (timm's EcaModule)."""

    name: str
    channels: int
    conv: ChannelConv


@dataclass(frozen=True)
class SplitAttention(Mixer):
    """ResNeSt's split attention (timm's SplitAttn, named ``conv2`` in its block), then the block's ``avd_last``
    pool: ``x = relu(bn0(conv(x)))`` holds ``radix`` splits of ``width`` channels (the conv has ``groups *
    radix`` groups); their sum, averaged over space, goes through ``fc1``, ``bn1``, ReLU and ``fc2`` (both biased
    and ``groups``-grouped) to one gate per split and channel: a softmax across the splits (each cardinal group's
    own; timm lays the gates out (group, radix) and transposes them to (radix, group)), a sigmoid at radix 1.
    The output is the gated sum of the splits, ``width`` channels."""

    conv: Conv
    bn0: Norm
    fc1: Conv
    bn1: Norm
    fc2: Conv
    radix: int
    groups: int  # timm's cardinality
    pool: AvgPool | None = None  # avd_last: the block's stride, after the split attention

    @property
    def width(self) -> int:
        return self.conv.out_channels // self.radix

    def modules(self) -> list[Conv | ChannelConv | Norm]:
        return [self.conv, self.bn0, self.fc1, self.bn1, self.fc2]

    def sizes(self, hw: tuple[int, int], sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
        hw = sizes[self.conv.name] = sizes[self.bn0.name] = _conv_size(hw, self.conv)
        sizes[self.fc1.name] = sizes[self.bn1.name] = sizes[self.fc2.name] = (1, 1)  # on the pooled map
        if self.pool is not None:
            hw = sizes[self.pool.name] = _pool_size(hw, self.pool)
        sizes[self.name] = hw  # the split attention's output (after its avd pool)
        return hw


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
    main: tuple[ConvNorm | Mixer, ...]
    shortcut: ConvNorm | None  # None: identity (or only shortcut_pool)
    shortcut_pool: AvgPool | MaxPool | None = None  # before the shortcut conv; a 1x1 MaxPool subsamples
    attention: SqueezeExcite | EfficientChannelAttention | None = None  # after the last main unit
    pre_norm: Norm | None = None
    shortcut_preact: bool = False
    relu_out: bool = True
    # Stochastic depth (training only): the main branch, after its attention, is zeroed per sample with this
    # probability and the survivors scaled by 1 / (1 - drop_path) before the add (timm's DropPath).
    drop_path: float = 0.0


@dataclass(frozen=True)
class Stem:
    """Conv units, then the pool (a max-pool, or its anti-aliased replacement) and a blur after it.

    ``stride`` is the stem's total stride (4 with a pool or ResNet-RS's strided conv in its place).
    """

    units: tuple[ConvNorm, ...]
    pool: MaxPool | AvgPool | None
    out_channels: int
    blur: BlurPool | None = None
    stride: int = 4


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
    dropout: float = 0.0  # training only: dropout on the pooled features, before fc (timm's drop_rate)


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
        return ROLES[self.role].trainable

    @property
    def size(self) -> int:
        return math.prod(self.shape)




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
            out.extend(_conv_params(item) if isinstance(item, (Conv, ChannelConv)) else _norm_params(item))
        if self.head.fc is not None:
            fc = self.head.fc
            dense = KINDS["dense"]
            out.append(_param(fc.name, "kernel", (fc.out_features, fc.in_features), dense.layout("kernel"),
                              "linear_uniform"))
            out.append(_param(fc.name, "bias", (fc.out_features,), dense.layout("bias"), "linear_uniform"))
        return tuple(out)

    @functools.cached_property
    def param_index(self) -> dict[str, Param]:
        return {p.name: p for p in self.params}

    @property
    def num_params(self) -> int:
        """Trainable parameters (torchvision counts these; BN running statistics are buffers)."""
        return sum(p.size for p in self.params if p.trainable)

    def modules(self) -> list[Conv | ChannelConv | Norm]:
        """Every conv and norm, in state_dict order (per block: pre-norm, main, attention, shortcut)."""
        items: list[Conv | ChannelConv | Norm] = _flat(self.stem.units)
        for block in self.blocks:
            if block.pre_norm is not None:
                items.append(block.pre_norm)
            items += _flat(block.main)
            if isinstance(block.attention, SqueezeExcite):
                items += [block.attention.fc1, block.attention.fc2]
            elif block.attention is not None:
                items.append(block.attention.conv)
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
        """Spatial size (H, W) of the output of every conv, norm and pool, by name."""
        return self._sizes(height, width)[0]

    def _sizes(self, height: int, width: int) -> tuple[dict[str, tuple[int, int]], tuple[int, int]]:
        sizes: dict[str, tuple[int, int]] = {}

        def units(hw: tuple[int, int], items: tuple[ConvNorm | Mixer, ...]) -> tuple[int, int]:
            for unit in items:
                if isinstance(unit, Mixer):
                    hw = unit.sizes(hw, sizes)
                    continue
                hw = sizes[unit.conv.name] = _conv_size(hw, unit.conv)
                if unit.norm is not None:
                    sizes[unit.norm.name] = hw
                if unit.pool is not None:
                    hw = sizes[unit.pool.name] = _pool_size(hw, unit.pool)
            return hw

        hw = units((height, width), self.stem.units)
        for pool in (self.stem.pool, self.stem.blur):
            if pool is not None:
                hw = sizes[pool.name] = _pool_size(hw, pool)
        for block in self.blocks:
            if block.pre_norm is not None:
                sizes[block.pre_norm.name] = hw
            out = units(hw, block.main)
            if isinstance(block.attention, SqueezeExcite):  # squeeze-and-excitation runs on the pooled 1x1 map
                sizes[block.attention.fc1.name] = sizes[block.attention.fc2.name] = (1, 1)
            elif block.attention is not None:  # ECA: a sequence of channels, one position each
                sizes[block.attention.conv.name] = (1, 1)
            if block.shortcut is not None:
                pool = block.shortcut_pool
                if pool is not None:
                    sizes[pool.name] = _pool_size(hw, pool)
                short = units(hw if pool is None else sizes[pool.name], (block.shortcut,))
                if short != out:  # e.g. timm's anti-aliased networks (aa_layer floors, the shortcut pool ceils)
                    raise InputError(
                        f"Input size {height}x{width} cannot run through {self.spec.name}: at {block.name} the main "
                        f"path gives {out[0]}x{out[1]} and the shortcut {short[0]}x{short[1]} (the reference "
                        "implementation fails the same way); choose another input size")
            hw = out
        if self.head.norm is not None:
            sizes[self.head.norm.name] = hw
        empty = next((name for name, (h, w) in sizes.items() if h < 1 or w < 1), None)
        if empty is not None:  # e.g. an anti-aliasing 2x2 pool on a 1-pixel map
            raise InputError(f"Input size {height}x{width} is too small for {self.spec.name}: {empty} would get an "
                             "empty feature map; choose a larger input size")
        return sizes, hw

    @property
    def stage_widths(self) -> tuple[int, ...]:
        """Each stage's output channels, in order (exporters' hidden_sizes / channels)."""
        return tuple(self.stage_blocks(s)[-1].out_channels for s in range(1, self.num_stages + 1))

    def stage_blocks(self, stage: int) -> tuple[Block, ...]:
        return tuple(b for b in self.blocks if b.stage == stage)

    @property
    def projections(self) -> tuple[bool, ...]:
        """Whether each block's shortcut is a projection (a conv), in block order."""
        return tuple(b.shortcut is not None for b in self.blocks)

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


def _flat(units: tuple[ConvNorm | Mixer, ...]) -> list[Conv | ChannelConv | Norm]:
    return [m for u in units for m in (u.modules() if isinstance(u, Mixer) else (u.conv, u.norm)) if m is not None]


def _out(size: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _conv_size(hw: tuple[int, int], c: Conv) -> tuple[int, int]:
    return _out(hw[0], c.kernel_size, c.stride, c.padding, c.dilation), \
        _out(hw[1], c.kernel_size, c.stride, c.padding, c.dilation)


def _pool_size(hw: tuple[int, int], pool: MaxPool | AvgPool | BlurPool) -> tuple[int, int]:
    if isinstance(pool, BlurPool):
        k, s = pool.filter_size, pool.stride
        return _out(hw[0], k, s, pool.padding), _out(hw[1], k, s, pool.padding)
    k, s = pool.kernel_size, pool.stride
    if isinstance(pool, MaxPool):
        return _out(hw[0], k, s, pool.padding), _out(hw[1], k, s, pool.padding)
    if pool.mode in ("floor", "pad"):
        return _out(hw[0], k, s, pool.padding), _out(hw[1], k, s, pool.padding)
    if pool.mode == "same":  # padded by k-1 after each edge
        return (hw[0] - 1) // s + 1, (hw[1] - 1) // s + 1
    # ceil_mode: a last, partial window counts if it starts inside the input (PyTorch's rule)
    sized = [-(-(v - k) // s) + 1 for v in hw]
    h, w = (n - 1 if (n - 1) * s >= v else n for n, v in zip(sized, hw, strict=True))
    return h, w


def _param(module: str, role: str, shape: tuple[int, ...], layout: Layout, init: str) -> Param:
    return Param(f"{module}.{CANONICAL_SUFFIX[role]}", module, role, tuple(shape), layout, init)


def _conv_params(conv: Conv | ChannelConv) -> list[Param]:
    if isinstance(conv, ChannelConv):  # nn.Conv1d's default init: uniform, bound 1/sqrt(fan_in)
        layout = KINDS["channel_conv"].layout("kernel")
        return [_param(conv.name, "kernel", (1, 1, conv.kernel_size), layout, "fan_in_uniform")]
    kind = KINDS["conv"]
    shape = (conv.out_channels, conv.in_channels // conv.groups, conv.kernel_size, conv.kernel_size)
    params = [_param(conv.name, "kernel", shape, kind.layout("kernel"),
                     "zeros" if conv.zero_init else ROLES["kernel"].init)]
    if conv.bias:
        params.append(_param(conv.name, "bias", (conv.out_channels,), kind.layout("bias"), ROLES["bias"].init))
    return params


def _norm_params(norm: Norm) -> list[Param]:
    c = (norm.channels,)
    kind = KINDS[norm.kind]
    return [_param(norm.name, role, c, kind.layout(role), "zeros" if role == "gamma" and norm.zero_init else
                   ROLES[role].init)
            for role in kind.roles]


def _anti_alias(spec: ResNetSpec, name: str, channels: int, stride: int) -> AvgPool | BlurPool | None:
    """timm's create_aa: the pool that subsamples after a stride-1 conv (None: nothing to do)."""
    if spec.anti_alias == "avg":  # nn.AvgPool2d(stride): at stride 1 a 1x1 window, the identity
        return AvgPool(name, stride, stride, "floor") if stride > 1 else None
    pad_mode = "reflect" if spec.anti_alias == "blur" else "zeros"
    return BlurPool(name, channels, 3, stride, timm_padding(3, stride), pad_mode)


def _unit(spec: ResNetSpec, prefix: str, conv_name: str, norm_name: str | None, cin: int, cout: int, k: int,
          stride: int = 1, groups: int = 1, relu: bool = True, zero_init: bool = False,
          dilation: int = 1, anti_alias: bool = False) -> ConvNorm:
    """A conv and the norm after it (none when ``norm_name`` is None, or when the spec's norms are folded into
    the convs); ``zero_init`` zeroes the last of the two.

    ``anti_alias``: the conv runs at stride 1 and the spec's anti-aliasing pool (named ``aa``, as timm's)
    subsamples after the activation.
    """
    dilation = dilation if k > 1 else 1
    if spec.norm == "folded":  # the batch norm is folded into this conv's kernel and bias (inference)
        norm_name = None
    pool = _anti_alias(spec, f"{prefix}aa", cout, stride) if anti_alias else None
    stride = 1 if anti_alias else stride
    # Pre-activation networks bias only the convs no norm follows (keras.applications V2).
    # Folded norms leave the bias on every conv (the spec sets conv_bias, and refuses preact, for them).
    bias = spec.conv_bias and (norm_name is None or not spec.preact)
    conv = Conv(
        name=f"{prefix}{conv_name}", in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
        padding=dilation * (k - 1) // 2, dilation=dilation, groups=groups, bias=bias,
        zero_init=zero_init and norm_name is None, standardize_eps=spec.std_conv_eps if spec.std_conv else None,
    )
    norm = None if norm_name is None else _norm(spec, f"{prefix}{norm_name}", cout, zero_init)
    if norm is not None and norm.fused_act and not relu:  # pragma: no cover - the spec refuses such networks
        raise SpecError(f"norm={spec.norm!r} fuses its activation, but {norm.name} has none")
    return ConvNorm(conv, norm, relu, pool)


def _norm(spec: ResNetSpec, name: str, channels: int, zero_init: bool = False) -> Norm:
    """The spec's norm; grouped kinds split the channels into ``norm_groups`` groups."""
    groups = spec.norm_groups if spec.norm in GROUPED_NORMS else 1  # the spec checked that it divides channels
    return Norm(name=name, channels=channels, eps=spec.bn_eps, momentum=spec.bn_momentum, zero_init=zero_init,
                kind=spec.norm, groups=groups)


def _main(spec: ResNetSpec, prefix: str, cin: int, block_spec: BlockSpec, widths: tuple[int, ...], stride: int,
          first_dilation: int, dilation: int) -> tuple[ConvNorm | Mixer, ...]:
    """The main path, its convs ``widths`` wide. Post-activation names are torchvision's (conv1, bn1, ...);
    pre-activation ones timm's ResNetV2 (norm1 is the block's pre-norm, the norm after conv{i} is norm{i+1},
    the last conv bare)."""
    zero = spec.zero_init_residual
    pre = spec.preact
    norm = (lambda i: f"norm{i + 1}") if pre else (lambda i: f"bn{i}")  # noqa: E731
    # timm anti-aliases the 3x3 conv that strides, or that changes dilation (there a stride-1 blur).
    aa = spec.anti_alias is not None and (stride == 2 or first_dilation != dilation)
    if isinstance(block_spec, ResNeSt):  # before Bottleneck: it subclasses it
        return _resnest_main(spec, prefix, cin, block_spec, widths, stride, first_dilation)
    # A block type's own parameters come from its stage's sub-spec (``block_spec``), never from the flat names.
    if isinstance(block_spec, Res2Net):
        return _res2net_main(spec, prefix, cin, block_spec, widths, stride, first_dilation)
    if isinstance(block_spec, (SKBasic, SKBottleneck)):  # before Basic / Bottleneck, which they subclass
        return sk_main(spec, prefix, cin, block_spec, widths, stride, first_dilation, dilation)
    if isinstance(block_spec, Basic):
        first, cout = widths
        return (
            _unit(spec, prefix, "conv1", norm(1), cin, first, 3, stride=stride, dilation=first_dilation,
                  anti_alias=aa),
            _unit(spec, prefix, "conv2", None if pre else norm(2), first, cout, 3, relu=False, zero_init=zero,
                  dilation=dilation),
        )
    first, width, cout = widths
    bottleneck = block_spec  # a Bottleneck: every other type returned above
    s1, s3 = (stride, 1) if bottleneck.stride_in_1x1 else (1, stride)
    return (
        _unit(spec, prefix, "conv1", norm(1), cin, first, 1, stride=s1),
        _unit(spec, prefix, "conv2", norm(2), first, width, 3, stride=s3, groups=bottleneck.groups,
              dilation=first_dilation, anti_alias=aa),
        _unit(spec, prefix, "conv3", None if pre else norm(3), width, cout, 1, relu=False, zero_init=zero),
    )


def _resnest_main(spec: ResNetSpec, prefix: str, cin: int, block_spec: ResNeSt, widths: tuple[int, ...],
                  stride: int, first_dilation: int) -> tuple[ConvNorm | Mixer, ...]:
    """timm's ResNestBottleneck: 1x1 (conv1, bn1, ReLU), split attention (conv2), 1x1 (conv3, bn3). With ``avd``
    a strided block moves its stride to a 3x3 average pool (padding 1, counted), after the first ReLU
    (``avd_first``) or after the split attention (``avd_last``); timm's blocks are post-activation, batch- or
    group-normed (the spec refuses fused norms without pre-activation), without anti-aliasing, reduce_first or
    pre-activation (refused here, naming the field)."""
    first, width, cout = widths  # the spec checked what ResNeSt blocks cannot be (spec_blocks)
    avd = block_spec.avd and stride > 1  # timm's is_first is never set by its ResNet
    pool = AvgPool(f"{prefix}{'avd_first' if block_spec.avd_first else 'avd_last'}", 3, stride, "pad") \
        if avd else None
    conv_stride = 1 if avd else stride
    radix, groups = block_spec.radix, block_spec.groups
    attn = resnest_attn_width(width, block_spec)
    mid = width * radix
    name = f"{prefix}conv2"
    split = SplitAttention(
        name=name,
        conv=Conv(f"{name}.conv", first, mid, 3, stride=conv_stride, padding=first_dilation, dilation=first_dilation,
                  groups=groups * radix, standardize_eps=spec.std_conv_eps if spec.std_conv else None),
        bn0=_norm(spec, f"{name}.bn0", mid),
        fc1=Conv(f"{name}.fc1", width, attn, 1, groups=groups, bias=True),
        bn1=_norm(spec, f"{name}.bn1", attn),
        fc2=Conv(f"{name}.fc2", attn, mid, 1, groups=groups, bias=True),
        radix=radix, groups=groups, pool=pool if avd and not block_spec.avd_first else None)
    conv1 = _unit(spec, prefix, "conv1", "bn1", cin, first, 1)
    if avd and block_spec.avd_first:
        conv1 = ConvNorm(conv1.conv, conv1.norm, conv1.relu, pool)
    return (conv1, split,
            _unit(spec, prefix, "conv3", "bn3", width, cout, 1, relu=False, zero_init=spec.zero_init_residual))


def _res2net_main(spec: ResNetSpec, prefix: str, cin: int, block_spec: Res2Net, widths: tuple[int, ...],
                  stride: int, first_dilation: int) -> tuple[ConvNorm | Mixer, ...]:
    """timm's Bottle2neck: conv1/bn1 to ``scale`` splits, the scales (:class:`Res2NetScales`), conv3/bn3.
    Every 3x3 has the block's stride and ``first_dilation`` (timm's), ``groups`` = its cardinality."""
    first, wide, cout = widths  # the spec checked what Res2Net blocks cannot be (spec_blocks)
    scale = block_spec.scale
    width = wide // scale
    index = int(cast(re.Match, _BLOCK_PREFIX.match(prefix))[2])
    # timm's is_first: the block strides or has a downsample (the shortcut rule of _block: a projection where the
    # width changes, or at a stride, or with project_first in a stage's first block).
    is_first = stride != 1 or cin != cout or (spec.project_first and index == 0)
    convs = tuple(Conv(f"{prefix}convs.{i}", width, width, 3, stride=stride, padding=first_dilation,
                       dilation=first_dilation, groups=block_spec.groups,
                       standardize_eps=spec.std_conv_eps if spec.std_conv else None)
                  for i in range(max(1, scale - 1)))
    bns = tuple(_norm(spec, f"{prefix}bns.{i}", width) for i in range(len(convs)))
    pool = AvgPool(f"{prefix}pool", 3, stride, "pad") if is_first and scale > 1 else None
    return (
        _unit(spec, prefix, "conv1", "bn1", cin, wide, 1),
        Res2NetScales(prefix[:-1], width, scale, is_first, convs, bns, pool),
        _unit(spec, prefix, "conv3", "bn3", wide, cout, 1, relu=False, zero_init=spec.zero_init_residual),
    )


def block_prefix(stage: int, index: int) -> str:
    """The canonical name prefix of block ``index`` (from 0) of stage ``stage`` (from 1): torchvision's."""
    return f"layer{stage}.{index}."


_BLOCK_PREFIX = re.compile(r"layer(\d+)\.(\d+)\.")


def depths_shown(names: Iterable[str]) -> tuple[int, ...]:
    """The blocks per stage that canonical ``names`` hold (the inverse of :func:`block_prefix`): a plan's
    own names give its ``spec.layers``, so a cheap first test of whether tensors can fit a spec."""
    blocks: dict[int, set[int]] = {}
    for name in names:
        found = _BLOCK_PREFIX.match(name)
        if found:
            blocks.setdefault(int(found[1]), set()).add(int(found[2]))
    return tuple(len(blocks[stage]) for stage in sorted(blocks))


def _block(spec: ResNetSpec, stage: int, index: int, cin: int, widths: tuple[int, ...], stride: int,
           first_dilation: int, dilation: int) -> Block:
    """One block; ``first_dilation`` is the previous stage's dilation (timm and torchvision agree)."""
    prefix = block_prefix(stage, index)
    cout = widths[-1]
    block_stride = stride
    main = _main(spec, prefix, cin, spec.stage_blocks[stage - 1], widths, stride, first_dilation, dilation)
    attention: SqueezeExcite | EfficientChannelAttention | None = None
    if spec.attention == "se":
        reduced = se_width(cout, spec.se_ratio)
        attention = SqueezeExcite(
            f"{prefix}se",
            Conv(f"{prefix}se.fc1", cout, reduced, 1, bias=True),
            Conv(f"{prefix}se.fc2", reduced, cout, 1, bias=True),
        )
    elif spec.attention == "eca":
        attention = EfficientChannelAttention(f"{prefix}se", cout,
                                              ChannelConv(f"{prefix}se.conv",
                                                                          spec.stage_eca_kernels()[stage - 1]))
    pool: AvgPool | MaxPool | None
    shortcut = pool = None
    # The shortcut rule, the only place it is written. A change of width projects; a stride alone
    # projects too, except with stride_block="last", whose shortcut only subsamples (keras.applications V2);
    # with project_first every stage's first block projects (keras-hub's basic_block_vd).
    if stride != 1 and cin == cout and spec.stride_block == "last":
        pool = MaxPool(f"{prefix}downsample.pool", kernel_size=1, stride=stride, padding=0)
    elif stride != 1 or cin != cout or (spec.project_first and index == 0):
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
        # timm's downsample_conv widens the kernel (down_kernel_size) only where it strides or dilates.
        k = spec.down_kernel_size if stride != 1 or dilation != 1 else 1
        shortcut = _unit(spec, prefix, names[1], names[2], cin, cout, k, stride=stride, relu=False,
                         dilation=first_dilation)
    pre_norm = _norm(spec, f"{prefix}norm1", cin) if spec.preact else None
    return Block(prefix[:-1], stage, index, cin, cout, block_stride, main, shortcut, pool, attention, pre_norm,
                 shortcut_preact=spec.preact and shortcut is not None, relu_out=not spec.preact)


def _stem(spec: ResNetSpec) -> Stem:
    last_norm = None if spec.preact else "bn1"  # pre-activation: the first block's norm1 follows
    relu = not spec.preact
    widths = stem_widths(spec.stem, spec.stem_width)
    out = widths[-1]
    if spec.stem == "7x7":
        units: tuple[ConvNorm, ...] = (
            _unit(spec, "", "conv1", last_norm, spec.in_channels, out, 7, stride=2, relu=relu),)
    else:  # timm's deep stems: three 3x3 convs in a Sequential named conv1, the last norm is bn1
        first, middle, _ = widths
        units = (
            _unit(spec, "", "conv1.0", "conv1.1", spec.in_channels, first, 3, stride=2),
            _unit(spec, "", "conv1.3", "conv1.4", first, middle, 3),
            _unit(spec, "", "conv1.6", last_norm, middle, out, 3, relu=relu),
        )
    if spec.replace_stem_pool:  # ResNet-RS: a strided conv, norm and ReLU where the max-pool was
        return Stem((*units, _unit(spec, "", "maxpool.0", "maxpool.1", out, out, 3, stride=2)), None, out)
    pool: MaxPool | AvgPool | None = None
    blur = None
    pad_value = -math.inf if spec.stem_pool_padding == "-inf" else 0.0
    nonnegative = units[-1].act == "relu"  # after a ReLU, zero padding is exactly -inf padding for a max-pool
    if spec.stem_pool and spec.anti_alias == "avg":  # timm: nn.AvgPool2d(2) instead of the max-pool
        pool = AvgPool("maxpool", 2, 2, "floor")
    elif spec.stem_pool and spec.anti_alias is not None:  # timm: a stride-1 max-pool, then the blur
        pool = MaxPool("maxpool.0", stride=1, pad_value=pad_value, nonnegative_input=nonnegative)
        blur = cast(BlurPool, _anti_alias(spec, "maxpool.1", out, 2))  # not "avg": a BlurPool
    elif spec.stem_pool:
        pool = MaxPool("maxpool", pad_value=pad_value, nonnegative_input=nonnegative)
    return Stem(units, pool, out, blur, stride=4 if spec.stem_pool else 2)


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
    """The structure of ``spec``: blocks, strides, shortcuts, channels and canonical names.

    Plans are cached: the same spec gives the same plan object.

    Args:
        spec: The spec to lay out (already validated when it was built).

    Returns:
        The :class:`Plan`: stem, blocks and head, with every parameter's canonical name and shape.

    Example:
        >>> import resnet_core as rc
        >>> plan = rc.make_plan(rc.get_spec("resnet50"))
        >>> plan.num_params, len(plan.blocks), plan.stage_widths
        (25557032, 16, (256, 512, 1024, 2048))
    """
    # Specs compare equal whatever their name; the cache key includes it so plan.spec keeps its own.
    return _make_plan(spec, spec.name)


@functools.lru_cache(maxsize=64)
def _make_plan(spec: ResNetSpec, name: str) -> Plan:
    stem = _stem(spec)
    blocks: list[Block] = []
    cin = stem.out_channels
    prev_dilation = 1
    widths = iter(spec.main_widths())
    drop_paths = iter(drop_path_schedule(spec.drop_path_rate, sum(spec.layers)))
    for s, (strides, dilation) in enumerate(_strides(spec, stem.stride)):
        for i, stride in enumerate(strides):
            block = _block(spec, s + 1, i, cin, next(widths), stride, prev_dilation, dilation)
            block = dataclasses.replace(block, drop_path=next(drop_paths))
            blocks.append(block)
            prev_dilation = dilation
            cin = block.out_channels
    norm = _norm(spec, "norm", cin) if spec.preact else None
    if spec.include_top:
        head = Head("avg", Dense("fc", cin, spec.num_classes), spec.num_classes, norm, dropout=spec.drop_rate)
    else:
        head = Head(spec.pooling, None, cin, norm, dropout=spec.drop_rate)
    return Plan(spec, stem, tuple(blocks), head)


# SKNet (timm's SelectiveKernelBasic / SelectiveKernelBottleneck) -----------------------------------------------------
@dataclass(frozen=True)
class SelectiveKernelConv(Mixer):
    """timm's SelectiveKernel: each path is conv, batch norm, ReLU (on its ``1/len(paths)`` share of the input
    channels with ``split_input``); ``attn`` weighs the paths per channel: the paths' sum, globally averaged,
    through ``fc_reduce`` (1x1, no bias), ``attn_norm``, ReLU, ``fc_select`` (1x1 to ``channels * paths``), a
    softmax over the paths; the output is the weighted sum of the paths."""

    paths: tuple[ConvNorm, ...]
    split_input: bool
    in_channels: int
    channels: int
    fc_reduce: Conv
    attn_norm: Norm
    fc_select: Conv

    @property
    def shape_text(self) -> str:
        """Table 1's block shape: each path's kernel (and dilation), the width, groups and split input."""
        paths = "+".join(f"{u.conv.kernel_size}x{u.conv.kernel_size}" + (f" d{u.conv.dilation}" if u.conv.dilation > 1
                                                                          else "") for u in self.paths)
        groups = f", C={self.paths[0].conv.groups}" if self.paths[0].conv.groups > 1 else ""
        return f"SK({paths}){', split' if self.split_input else ''}, {self.channels}{groups}"

    @property
    def signature(self) -> tuple:
        """What makes two selective kernels draw the same (the diagram's): all but names and widths."""
        return tuple((u.conv.kernel_size, u.conv.dilation, u.conv.stride > 1, u.conv.groups > 1) for u in self.paths), \
            self.split_input

    def diagram_boxes(self) -> list[tuple[str, str]]:
        """The block diagram's boxes: the paths, their norm and ReLU, the attention, the weighted sum."""
        first = self.paths[0].conv
        paths = " | ".join(f"{u.conv.kernel_size}x{u.conv.kernel_size}" + (f" dilation {u.conv.dilation}"
                                                                          if u.conv.dilation > 1 else "")
                           for u in self.paths)
        text = f"selective kernel: {paths} conv, {self.channels}" + (f", /{first.stride}" if first.stride > 1 else "")
        if first.groups > 1:
            text += f", groups {first.groups}"
        return [(text + (", split input" if self.split_input else ""), "conv"), ("batch norm, ReLU per path", "norm"),
                (f"attention: sum, mean, 1x1 {self.fc_reduce.out_channels}, BN, ReLU, 1x1 "
                 f"{self.fc_select.out_channels}, softmax over {len(self.paths)} paths", "attn"),
                ("weighted sum of the paths", "act")]

    def modules(self) -> list[Conv | ChannelConv | Norm]:
        """timm's state_dict order: each path's conv and norm, then the attention's reduce, norm, select."""
        out: list[Conv | ChannelConv | Norm] = []
        for path in self.paths:
            out += [m for m in (path.conv, path.norm) if m is not None]
        return [*out, self.fc_reduce, self.attn_norm, self.fc_select]

    def sizes(self, hw: tuple[int, int], sizes: dict[str, tuple[int, int]]) -> tuple[int, int]:
        outs = set()
        for path in self.paths:
            out = sizes[path.conv.name] = _conv_size(hw, path.conv)
            if path.norm is not None:
                sizes[path.norm.name] = out
            outs.add(out)
        if len(outs) != 1:  # pragma: no cover - every path's padding keeps the same output size
            raise RuntimeError(f"{self.name}: its paths disagree on the output size {sorted(outs)}")
        for m in (self.fc_reduce, self.attn_norm, self.fc_select):
            sizes[m.name] = (1, 1)
        return outs.pop()


def selective_kernel(spec: ResNetSpec, name: str, block: SKBasic | SKBottleneck, cin: int, cout: int,
                     stride: int, dilation: int, groups: int) -> SelectiveKernelConv:
    """timm's SelectiveKernel(cin, cout, stride, dilation, groups, **sk_kwargs) at module path ``name``.

    Each path's padding is timm's get_padding (``((stride - 1) + dilation * (k - 1)) // 2``, symmetric), and
    its groups ``min(cout, groups)``, as timm's constructor computes them.
    """
    paths = selective_kernel_paths(block, dilation)
    share = cin // len(paths) if block.split_input else cin
    groups = min(cout, groups)
    units = []
    for i, (k, d) in enumerate(paths):
        unit = _unit(spec, f"{name}.", f"paths.{i}.conv", f"paths.{i}.bn", share, cout, k, stride=stride,
                           groups=groups, dilation=d)
        padding = timm_padding(k, stride, d)
        if unit.conv.padding != padding:  # pragma: no cover - equal for odd kernels at stride 1 or 2
            raise RuntimeError(f"{unit.conv.name}: padding {unit.conv.padding}, timm's get_padding {padding}")
        units.append(unit)
    reduced = sk_attn_width(cout, block.rd_ratio, block.rd_divisor)
    return SelectiveKernelConv(
        name=name, paths=tuple(units), split_input=block.split_input, in_channels=cin, channels=cout,
        fc_reduce=Conv(f"{name}.attn.fc_reduce", cout, reduced, 1),
        attn_norm=_norm(spec, f"{name}.attn.bn", reduced),
        fc_select=Conv(f"{name}.attn.fc_select", reduced, cout * len(paths), 1),
    )


def sk_main(spec: ResNetSpec, prefix: str, cin: int, block: SKBasic | SKBottleneck, widths: tuple[int, ...],
            stride: int, first_dilation: int, dilation: int) -> tuple[ConvNorm | Mixer, ...]:
    """A selective-kernel block's main path (timm's SelectiveKernelBasic / SelectiveKernelBottleneck)."""
    zero = spec.zero_init_residual
    if not isinstance(block, SKBottleneck):
        first, cout = widths
        return (
            selective_kernel(spec, f"{prefix}conv1", block, cin, first, stride, first_dilation, 1),
            _unit(spec, prefix, "conv2.conv", "conv2.bn", first, cout, 3, relu=False, zero_init=zero,
                        dilation=dilation),
        )
    first, width, cout = widths
    return (
        _unit(spec, prefix, "conv1.conv", "conv1.bn", cin, first, 1),
        selective_kernel(spec, f"{prefix}conv2", block, first, width, stride, first_dilation, block.groups),
        _unit(spec, prefix, "conv3.conv", "conv3.bn", width, cout, 1, relu=False, zero_init=zero),
    )
