"""The framework-neutral architecture spec: every knob of the ResNet family, validated once."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ResNetCoreError
from .widths import (
    EXPANSION,
    bottleneck_width,
    eca_kernel_size,
    main_widths,
    stage_planes,
    stem_widths,
    tiered_stem_width,
    width_fields,
)

BLOCKS = ("basic", "bottleneck")
POOLINGS = (None, "avg", "max")
STEMS = ("7x7", "deep", "deep_tiered")
DOWNSAMPLES = ("conv", "avg")
ATTENTIONS = (None, "se", "eca")
ANTI_ALIASES = (None, "avg", "blur", "blur_zero")
OUTPUT_STRIDES = (8, 16, 32)
STRIDE_BLOCKS = ("first", "last")
POOL_PADDINGS = ("-inf", "zero")
NORMS = ("batch", "group", "evo_s0", "frn")
FUSED_NORMS = ("evo_s0", "frn")  # norms that compute their own nonlinearity (timm's norm-activation layers)
GROUPED_NORMS = ("group", "evo_s0")  # norms over groups of channels: norm_groups must divide every normalised width
# Fields that change nothing in some specs, with the test saying so: equality and hashing read them as
# their defaults there, so one architecture is one spec whichever value such a field was given.
_UNUSED_WHEN = {
    "num_classes": lambda s: not s.include_top,
    "se_ratio": lambda s: s.attention != "se",
    "norm_groups": lambda s: s.norm not in GROUPED_NORMS,
    "bn_momentum": lambda s: s.norm != "batch",  # the other norms keep no running statistics
    "std_conv_eps": lambda s: not s.std_conv,
    # after a ReLU (post-activation stems), zero padding is -inf padding for a max-pool
    "stem_pool_padding": lambda s: not (s.stem_pool and s.preact),
}


class SpecError(ResNetCoreError, ValueError):
    """A spec field holds a value the ResNet family cannot express."""


def _expected(field_name: str, expected: str, received: Any) -> SpecError:
    return SpecError(f"Invalid ResNetSpec.{field_name}: expected {expected}. Received: {field_name}={received!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)



@dataclass(frozen=True)
class ResNetSpec:
    """One member of the ResNet family, independent of any framework.

    Defaults describe torchvision's ResNet-50 (v1.5: stride on the 3x3 conv). ``bn_momentum`` uses
    PyTorch's convention (weight of the new batch statistic); Keras adapters use ``1 - bn_momentum``.
    ``stem_width`` is the output width of the 7x7 stem; for the deep stems it is timm's meaning (width
    of the first 3x3 convs, output twice that). ``downsample="avg"`` is timm's "d" shortcut
    (average-pool, then a stride-1 1x1 conv); ``attention="se"`` adds timm's squeeze-and-excitation
    (reduction ``se_ratio``, rounded to a multiple of 8); ``output_stride`` < 32 replaces the last
    strides by dilation, as torchvision's ``replace_stride_with_dilation`` and timm's ``output_stride``.

    ``preact`` builds pre-activation (ResNet v2) blocks: BN-ReLU before each conv, a projection
    shortcut fed by the pre-activated input, no ReLU after the addition, no norm after the stem and a
    final norm before the head; there ``conv_bias`` puts biases only on convs no norm follows
    (keras.applications V2). ``stride_block="last"`` moves each downsampling to the last block of the
    previous stage, with a 1x1 max-pool (subsampling) shortcut (keras.applications V2).
    ``stem_pool_padding`` is what the stem max-pool pads with: PyTorch's "-inf", or "zero" as
    keras.applications V2 does (the two differ only when no ReLU precedes the pool, i.e. with ``preact``).

    timm's further options: ``attention="eca"`` is efficient channel attention (a 1D conv across the
    pooled channels, its kernel size computed from the width); ``anti_alias`` blurs before subsampling
    (timm's ``aa_layer``): each strided 3x3 conv runs at stride 1 and is followed by a 2x2 average pool
    ("avg") or a binomial blur pool padded by reflection ("blur") or zeros ("blur_zero"), and the stem
    pool changes likewise; ``replace_stem_pool`` replaces the stem max-pool by a stride-2 3x3 conv, norm
    and ReLU (ResNet-RS); ``reduce_first`` divides the width of each block's first conv (SENet-154: 2);
    ``down_kernel_size`` is the kernel of strided or dilated projection shortcuts (SENet-154: 3).
    ``project_first`` projects the shortcut of every stage's first block, even where width and stride
    stay (keras-hub's ``basic_block_vd``, whose first block has a 64 -> 64 projection).
    ``norm`` is the normalisation after each conv (timm's layers, each with its activation fused as
    timm fuses it): "batch" (BatchNorm then ReLU), "group" (GroupNorm over ``norm_groups`` groups,
    then ReLU), "evo_s0" (EvoNorm-S0: ``x * sigmoid(v * x) / group_std(x)`` then affine, over
    ``norm_groups`` groups) or "frn" (FilterResponseNorm with its TLU: ``max(affine(x / rms(x)), tau)``).
    ``bn_eps`` is every norm's epsilon, whichever its kind; ``bn_momentum`` only concerns "batch".
    The two fused norms need ``preact`` (there every norm carries its activation). ``std_conv``
    standardises every conv kernel in the forward (timm's StdConv2d: per output channel, zero mean and
    unit variance with ``std_conv_eps``), so the stored kernels stay the trained ones (BiT).

    Per-stage and per-block widths (timm's ``block``/``channels`` lists and its pruned models):
    ``block_types`` gives each stage its block type (``block`` is then stage 1's) and ``planes`` each
    stage's base width (timm's ``channels``; ``planes[0]`` is ``base_planes``), instead of one type and
    ``base_planes`` doubled per stage. ``block_widths`` gives every block's main-conv output widths
    explicitly, in network order ((conv1, conv2, conv3) for a bottleneck, (conv1, conv2) for a basic
    block; the last, the block's output, shared by a stage), replacing the width rule (whose fields then
    keep their defaults): channel-pruned models (timm's ``*_pruned``). ``eca_kernels`` is each stage's
    ECA kernel size where it is not the one computed from the width (a pruned model keeps the kernels
    of its unpruned widths). Each of these is None when the single-value fields already say it.

    Raises:
        SpecError: A field holds a value the family cannot express (checked when the spec is built).

    Examples:
        The defaults are ResNet-50; a ResNeXt changes a few fields:

        >>> from resnet_core import ResNetSpec
        >>> ResNetSpec().depth
        50
        >>> resnext = ResNetSpec(groups=32, width_per_group=4, name="my_resnext50")
        >>> resnext.block, resnext.layers, resnext.expansion
        ('bottleneck', (3, 4, 6, 3), 4)
        >>> ResNetSpec(block="plain")
        Traceback (most recent call last):
        ...
        resnet_core.spec.SpecError: Invalid ResNetSpec.block: expected one of ('basic', 'bottleneck'). Received: ...
    """

    block: str = "bottleneck"
    layers: tuple[int, ...] = (3, 4, 6, 3)
    groups: int = 1
    width_per_group: int = 64
    num_classes: int = 1000
    include_top: bool = True
    pooling: str | None = None
    in_channels: int = 3
    stem_width: int = 64
    base_planes: int = 64
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    zero_init_residual: bool = False
    stride_in_1x1: bool = False
    conv_bias: bool = False
    stem: str = "7x7"
    stem_pool: bool = True
    downsample: str = "conv"
    attention: str | None = None
    se_ratio: float = 1.0 / 16
    output_stride: int = 32
    preact: bool = False
    stride_block: str = "first"
    stem_pool_padding: str = "-inf"
    anti_alias: str | None = None
    replace_stem_pool: bool = False
    reduce_first: int = 1
    down_kernel_size: int = 1
    project_first: bool = False
    norm: str = "batch"
    norm_groups: int = 32
    std_conv: bool = False
    std_conv_eps: float = 1e-6
    block_types: tuple[str, ...] | None = None
    planes: tuple[int, ...] | None = None
    block_widths: tuple[tuple[int, ...], ...] | None = None
    eca_kernels: tuple[int, ...] | None = None
    name: str = field(default="resnet", compare=False)

    def __post_init__(self) -> None:
        # Normalise sequences at the edge (lists from JSON or users become tuples, so specs hash).
        if isinstance(self.layers, Sequence) and not isinstance(self.layers, str):
            object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("block_types", "planes", "eca_kernels"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.block_widths, Sequence) and not isinstance(self.block_widths, str):
            object.__setattr__(self, "block_widths", tuple(
                tuple(w) if isinstance(w, Sequence) and not isinstance(w, str) else w for w in self.block_widths))
        self._validate()
        self._normalise_per_stage()

    def _normalise_per_stage(self) -> None:
        """One representation per network: a per-stage or per-block field that the single-value fields
        already give becomes None (so a spec read from weights equals the preset it is)."""
        n = len(self.layers)
        if self.block_types is not None and set(self.block_types) == {self.block}:
            object.__setattr__(self, "block_types", None)
        if self.planes == stage_planes(self.base_planes, n):
            object.__setattr__(self, "planes", None)
        if self.block_widths is not None:  # widths the rule gives: said by the rule's fields
            ends = list(itertools.accumulate(self.layers))
            stages = [(block, self.block_widths[end - depth:end])
                      for block, depth, end in zip(self.stage_block_types, self.layers, ends, strict=True)]
            fields = width_fields(stages, self.groups)
            if fields is not None:
                try:
                    rule = dataclasses.replace(self, **fields)
                except SpecError:  # e.g. a reduce_first the rule needs, refused with preact: stay explicit
                    return
                for name in fields:
                    object.__setattr__(self, name, getattr(rule, name))
        if self.eca_kernels is not None and self.eca_kernels == self._derived_eca_kernels():
            object.__setattr__(self, "eca_kernels", None)

    @property
    def stage_block_types(self) -> tuple[str, ...]:
        """Each stage's block type."""
        return self.block_types if self.block_types is not None else (self.block,) * len(self.layers)

    @property
    def stage_base_planes(self) -> tuple[int, ...]:
        """Each stage's base width (planes); a block's output is ``EXPANSION[type]`` times it by the rule."""
        return self.planes if self.planes is not None else stage_planes(self.base_planes, len(self.layers))

    def _rule_widths(self) -> tuple[tuple[int, ...], ...]:
        return tuple(main_widths(block, planes, self.width_per_group, self.groups, self.reduce_first)
                     for block, planes, depth in zip(self.stage_block_types, self.stage_base_planes, self.layers,
                                                     strict=True) for _ in range(depth))

    def main_widths(self) -> tuple[tuple[int, ...], ...]:
        """Every block's main-conv output widths, in network order (the last is the block's output)."""
        return self.block_widths if self.block_widths is not None else self._rule_widths()

    def stage_eca_kernels(self) -> tuple[int, ...]:
        """Each stage's ECA kernel size (meaningful with ``attention="eca"``)."""
        return self.eca_kernels if self.eca_kernels is not None else self._derived_eca_kernels()

    def _derived_eca_kernels(self) -> tuple[int, ...]:
        ends = list(itertools.accumulate(self.layers))
        widths = self.main_widths()
        return tuple(eca_kernel_size(widths[end - 1][-1]) for end in ends)

    def canonical(self) -> ResNetSpec:
        """This spec with every field that changes nothing here at its default: the form specs compare in.

        Example:
            >>> from resnet_core import ResNetSpec
            >>> spec = ResNetSpec(se_ratio=0.25)  # no attention: the ratio has no effect
            >>> spec == ResNetSpec(), spec.se_ratio, spec.canonical().se_ratio
            (True, 0.25, 0.0625)
        """
        unused = self._unused()
        return self if all(getattr(self, k) == v for k, v in unused.items()) else dataclasses.replace(self, **unused)

    def _unused(self) -> dict[str, Any]:
        """The fields that change nothing in this spec, each with its default."""
        return {name: _DEFAULTS[name] for name, test in _UNUSED_WHEN.items() if test(self)}

    def _key(self) -> tuple[Any, ...]:
        """The compared fields, those without effect as their defaults; computed once (specs are frozen)."""
        key = self.__dict__.get("_architecture")
        if key is None:
            unused = self._unused()
            key = tuple(unused.get(f.name, getattr(self, f.name)) for f in dataclasses.fields(self) if f.compare)
            object.__setattr__(self, "_architecture", key)
        return key

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ResNetSpec):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _validate(self) -> None:
        if self.block not in BLOCKS:
            raise _expected("block", f"one of {BLOCKS}", self.block)
        if not isinstance(self.layers, tuple) or not self.layers:
            raise _expected("layers", "a non-empty sequence of stage depths", self.layers)
        if not all(_is_int(d) and d > 0 for d in self.layers):
            raise _expected("layers", "positive integers (blocks per stage)", self.layers)
        for name in ("groups", "width_per_group", "in_channels", "stem_width", "base_planes", "reduce_first"):
            value = getattr(self, name)
            if not _is_int(value) or value <= 0:
                raise _expected(name, "a positive integer", value)
        if not _is_int(self.num_classes) or self.num_classes < 0:
            raise _expected("num_classes", "a non-negative integer", self.num_classes)
        self._validate_per_stage()
        if "basic" in self.stage_block_types and (self.groups != 1 or self.width_per_group != 64):
            raise SpecError(
                "Invalid ResNetSpec: the basic block allows only groups=1 and width_per_group=64. "
                f"Received: groups={self.groups!r}, width_per_group={self.width_per_group!r}"
            )
        for name in ("include_top", "zero_init_residual", "stride_in_1x1", "conv_bias", "preact", "replace_stem_pool",
                     "project_first"):
            if not isinstance(getattr(self, name), bool):
                raise _expected(name, "a bool", getattr(self, name))
        if self.include_top and self.num_classes == 0:
            raise _expected("num_classes", "a positive integer when include_top=True", self.num_classes)
        if self.pooling not in POOLINGS:
            raise _expected("pooling", f"one of {POOLINGS}", self.pooling)
        if self.include_top and self.pooling is not None:
            raise _expected("pooling", "None when include_top=True (the head always average-pools)", self.pooling)
        if not _is_number(self.bn_eps) or not 0 < self.bn_eps < 1:
            raise _expected("bn_eps", "a float in (0, 1)", self.bn_eps)
        if not _is_number(self.bn_momentum) or not 0 <= self.bn_momentum <= 1:
            raise _expected("bn_momentum", "a float in [0, 1] (PyTorch's convention)", self.bn_momentum)
        if self.stride_in_1x1 and "basic" in self.stage_block_types:
            raise _expected("stride_in_1x1", "False for the basic block (it has no 1x1 conv)", self.stride_in_1x1)
        if self.stem not in STEMS:
            raise _expected("stem", f"one of {STEMS}", self.stem)
        if self.downsample not in DOWNSAMPLES:
            raise _expected("downsample", f"one of {DOWNSAMPLES}", self.downsample)
        if self.attention not in ATTENTIONS:
            raise _expected("attention", f"one of {ATTENTIONS}", self.attention)
        if not isinstance(self.stem_pool, bool):
            raise _expected("stem_pool", "a bool", self.stem_pool)
        if not _is_number(self.se_ratio) or not 0 < self.se_ratio <= 1:
            raise _expected("se_ratio", "a float in (0, 1]", self.se_ratio)
        if self.output_stride not in OUTPUT_STRIDES:
            raise _expected("output_stride", f"one of {OUTPUT_STRIDES}", self.output_stride)
        if self.stride_block not in STRIDE_BLOCKS:
            raise _expected("stride_block", f"one of {STRIDE_BLOCKS}", self.stride_block)
        if self.stride_block == "last" and self.output_stride != 32:
            raise _expected("output_stride", "32 with stride_block='last' (dilation is defined per stage)",
                            self.output_stride)
        if self.stem_pool_padding not in POOL_PADDINGS:
            raise _expected("stem_pool_padding", f"one of {POOL_PADDINGS}", self.stem_pool_padding)
        self._validate_norm()
        self._validate_widths()
        self._validate_timm_options()
        if not isinstance(self.name, str) or not self.name:
            raise _expected("name", "a non-empty string", self.name)

    def _validate_timm_options(self) -> None:
        if self.anti_alias not in ANTI_ALIASES:
            raise _expected("anti_alias", f"one of {ANTI_ALIASES}", self.anti_alias)
        if self.anti_alias is not None and (self.preact or self.stride_in_1x1):
            raise _expected("anti_alias", "None with preact or stride_in_1x1 (timm anti-aliases only the strided "
                            "3x3 conv of post-activation blocks)", self.anti_alias)
        if self.replace_stem_pool and (not self.stem_pool or self.preact or self.anti_alias is not None):
            raise _expected("replace_stem_pool", "False without stem_pool, with preact or with anti_alias",
                            self.replace_stem_pool)
        if not _is_int(self.down_kernel_size) or self.down_kernel_size < 1 or self.down_kernel_size % 2 == 0:
            raise _expected("down_kernel_size", "a positive odd integer", self.down_kernel_size)
        if self.down_kernel_size != 1 and (self.downsample != "conv" or self.preact or self.stride_block != "first"):
            raise _expected("down_kernel_size", "1 unless downsample='conv' with post-activation blocks striding "
                            "first (timm's downsample_conv)", self.down_kernel_size)
        if self.reduce_first != 1 and self.preact:
            raise _expected("reduce_first", "1 with preact", self.reduce_first)
        # Every stage's blocks reduce (explicit block_widths keep reduce_first at 1: checked with them).
        stages = zip(self.stage_block_types, self.stage_base_planes, strict=True) if self.block_widths is None else ()
        for s, (block, base) in enumerate(stages):
            planes = base if block == "basic" else bottleneck_width(base, self.width_per_group, self.groups)
            first = planes // self.reduce_first
            if planes % self.reduce_first or first % self.groups or \
                    (self.norm in GROUPED_NORMS and first % self.norm_groups):
                raise _expected("reduce_first", f"a divisor of stage {s + 1}'s width {planes} leaving a multiple of "
                                f"groups={self.groups} (and of norm_groups with a grouped norm)", self.reduce_first)

    def _validate_widths(self) -> None:
        """Widths the plan computes must be at least 1, or the spec would validate and then fail in a framework."""
        if self.stem == "deep_tiered" and tiered_stem_width(self.stem_width) < 1:
            raise _expected("stem_width", "at least 4 for the deep_tiered stem (its first conv has "
                            f"3*(stem_width//4) = {tiered_stem_width(self.stem_width)} channels)", self.stem_width)
        if self.block_widths is None:
            self._validate_bottleneck_widths()
        if self.norm in GROUPED_NORMS:
            for where, width in self._normalised_widths():
                if width % self.norm_groups:
                    raise _expected("norm_groups", f"a divisor of every normalised width ({where} has {width} "
                                    f"channels with norm={self.norm!r})", self.norm_groups)
        if self.std_conv:  # a 1x1 conv over one channel has one weight per filter: standardised, it is 0
            for where, width in self._normalised_widths():
                if width < 2:
                    raise _expected("std_conv", f"False when a width is 1 ({where}: a 1x1 conv over it would have "
                                    "a single weight per filter, which standardises to 0)", self.std_conv)

        if self.std_conv:  # every width but the stem's inner convs' feeds some 1x1 conv
            stem_convs = len(stem_widths(self.stem, self.stem_width))
            for where, width in self._normalised_widths()[stem_convs - 1:]:
                if width == 1:
                    raise _expected("std_conv", f"False when a 1x1 conv has one input channel ({where} has 1): "
                                    "standardising a one-element kernel leaves 0, and PyTorch refuses it",
                                    self.std_conv)

    def _validate_per_stage(self) -> None:
        """block_types, planes, block_widths and eca_kernels: one entry per stage (per block), consistent."""
        n = len(self.layers)
        if self.block_types is not None:
            if not isinstance(self.block_types, tuple) or len(self.block_types) != n or \
                    any(b not in BLOCKS for b in self.block_types):
                raise _expected("block_types", f"None or one of {BLOCKS} per stage ({n} stages)", self.block_types)
            if self.block_types[0] != self.block:
                raise _expected("block", f"stage 1's type block_types[0]={self.block_types[0]!r}", self.block)
        if self.planes is not None:
            if not isinstance(self.planes, tuple) or len(self.planes) != n or \
                    not all(_is_int(p) and p > 0 for p in self.planes):
                raise _expected("planes", f"None or a positive integer per stage ({n} stages)", self.planes)
            if self.planes[0] != self.base_planes:
                raise _expected("base_planes", f"stage 1's width planes[0]={self.planes[0]}", self.base_planes)
        if self.block_widths is not None:
            self._validate_block_widths()
        if self.eca_kernels is not None:
            if self.attention != "eca":
                raise _expected("eca_kernels", "None without attention='eca'", self.eca_kernels)
            if not isinstance(self.eca_kernels, tuple) or len(self.eca_kernels) != n or \
                    not all(_is_int(k) and k > 0 and k % 2 for k in self.eca_kernels):
                raise _expected("eca_kernels", f"None or a positive odd integer per stage ({n} stages)",
                                self.eca_kernels)

    def _validate_block_widths(self) -> None:
        types = [b for b, d in zip(self.stage_block_types, self.layers, strict=True) for _ in range(d)]
        lengths = [{"basic": 2, "bottleneck": 3}[b] for b in types]
        widths = self.block_widths
        if not isinstance(widths, tuple) or len(widths) != len(types) or not all(
                isinstance(w, tuple) and len(w) == k and all(_is_int(c) and c > 0 for c in w)
                for w, k in zip(widths, lengths, strict=True)):
            raise _expected("block_widths", f"None or, for each of the {len(types)} blocks, its positive conv "
                            "widths: (conv1, conv2, conv3) per bottleneck, (conv1, conv2) per basic block", widths)
        start = 0
        for s, depth in enumerate(self.layers):
            outs = {w[-1] for w in widths[start:start + depth]}
            if len(outs) > 1:
                raise _expected("block_widths", f"one output width per stage (the identity shortcuts add them); "
                                f"stage {s + 1} has {sorted(outs)}", widths)
            start += depth
        for i, w in enumerate(widths):
            if len(w) == 3 and (w[0] % self.groups or w[1] % self.groups):
                raise _expected("block_widths", f"widths the 3x3 conv's groups={self.groups} divide (block {i + 1} "
                                f"has conv1, conv2 = {w[0]}, {w[1]})", widths)
        rule = {"reduce_first": 1, "base_planes": 64, "width_per_group": 64, "planes": None}
        changed = {k: getattr(self, k) for k, v in rule.items() if getattr(self, k) != v}
        if changed:
            raise _expected("block_widths", f"None with width-rule fields off their defaults {changed} (explicit "
                            f"widths replace the rule: keep {rule})", widths)

    def _normalised_widths(self) -> list[tuple[str, int]]:
        """Every conv's output width, by where it is: each is normalised (after the conv, or before the next
        block or the head in pre-activation networks)."""
        out = [(f"the stem's conv {i + 1}", w) for i, w in enumerate(stem_widths(self.stem, self.stem_width))]
        if self.block_widths is not None:
            return out + [(f"block {i + 1}'s conv{k + 1}", w) for i, widths in enumerate(self.block_widths)
                          for k, w in enumerate(widths)]
        for s, (block, planes) in enumerate(zip(self.stage_block_types, self.stage_base_planes, strict=True)):
            if block == "bottleneck":
                out.append((f"stage {s + 1}'s bottleneck width",
                            bottleneck_width(planes, self.width_per_group, self.groups)))
            out.append((f"stage {s + 1}'s {'output' if block == 'bottleneck' else 'width'}",
                        planes * EXPANSION[block]))
        return out

    def _validate_bottleneck_widths(self) -> None:
        for s, (block, planes) in enumerate(zip(self.stage_block_types, self.stage_base_planes, strict=True)):
            width = bottleneck_width(planes, self.width_per_group, self.groups)
            if block == "bottleneck" and width < 1:
                where = f"planes[{s}]" if self.planes is not None else f"base_planes*2**{s}"
                raise SpecError(
                    f"Invalid ResNetSpec: stage {s + 1}'s bottleneck width int({where} * width_per_group/64)"
                    f" * groups = int({planes} * {self.width_per_group}/64) * {self.groups} = {width}; a conv needs at "
                    "least 1 channel, so base_planes * width_per_group must be at least 64. Received: "
                    f"base_planes={self.base_planes!r}, width_per_group={self.width_per_group!r}, "
                    f"groups={self.groups!r}")

    def _validate_norm(self) -> None:
        if self.norm not in NORMS:
            raise _expected("norm", f"one of {NORMS}", self.norm)
        if not _is_int(self.norm_groups) or self.norm_groups <= 0:
            raise _expected("norm_groups", "a positive integer", self.norm_groups)
        if self.norm in FUSED_NORMS and not self.preact:
            raise _expected("norm", f"one of ('batch', 'group') with preact=False ({FUSED_NORMS} fuse their "
                            "activation, and a post-activation network has norms without one)", self.norm)
        if not isinstance(self.std_conv, bool):
            raise _expected("std_conv", "a bool", self.std_conv)
        if not _is_number(self.std_conv_eps) or not 0 < self.std_conv_eps < 1:
            raise _expected("std_conv_eps", "a float in (0, 1)", self.std_conv_eps)

    @property
    def expansion(self) -> int:
        """Output channels of a block relative to its base width (torchvision's ``expansion``)."""
        return EXPANSION[self.block]

    @property
    def depth(self) -> int:
        """Weighted layers on the main path, the number in a model's name."""
        per_block = {"basic": 2, "bottleneck": 3}
        return 2 + sum(per_block[b] * d for b, d in zip(self.stage_block_types, self.layers, strict=True))

    def replace(self, **changes: Any) -> ResNetSpec:
        """A validated copy with ``changes`` applied.

        Args:
            **changes: Field names and their new values.

        Returns:
            A new spec; this one is unchanged (specs are frozen).

        Raises:
            SpecError: A new value is invalid.
            TypeError: A name is not a field of :class:`ResNetSpec`.

        Example:
            >>> from resnet_core import ResNetSpec
            >>> spec = ResNetSpec().replace(num_classes=10)
            >>> spec.num_classes, ResNetSpec().num_classes
            (10, 1000)
        """
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["layers"] = list(self.layers)
        return data

    def to_json(self) -> str:
        """The spec as JSON text (keys sorted), which :meth:`from_json` reads back.

        Returns:
            One line of JSON holding every field, ``name`` included.

        Example:
            >>> from resnet_core import ResNetSpec
            >>> text = ResNetSpec(block="basic", layers=(2, 2, 2, 2)).to_json()
            >>> text[:40]
            '{"anti_alias": null, "attention": null, '
            >>> ResNetSpec.from_json(text) == ResNetSpec(block="basic", layers=(2, 2, 2, 2))
            True
        """
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetSpec:
        """The spec in ``data``. ``preprocessing`` (a field before it moved to
        :class:`~resnet_core.weights_info.WeightsInfo`) is dropped, so older files keep loading."""
        data = {k: v for k, v in data.items() if k != "preprocessing"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SpecError(f"Unknown ResNetSpec field(s) {unknown}. Known fields: {sorted(known)}")
        return cls(**dict(data))

    @classmethod
    def from_json(cls, text: str) -> ResNetSpec:
        """The spec in the JSON ``text`` written by :meth:`to_json` (see :meth:`from_dict`).

        Args:
            text: A JSON object of spec fields.

        Returns:
            The validated spec.

        Raises:
            SpecError: An unknown field, or an invalid value.
            json.JSONDecodeError: ``text`` is not JSON.

        Example:
            >>> from resnet_core import ResNetSpec
            >>> ResNetSpec.from_json('{"block": "basic", "layers": [2, 2, 2, 2], "name": "r18"}').depth
            18
        """
        return cls.from_dict(json.loads(text))


_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ResNetSpec)}
