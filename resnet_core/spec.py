"""The framework-neutral architecture spec: every knob of the ResNet family, validated once.

Options with parameters of their own are sub-specs (:mod:`resnet_core.spec_parts`): the block type, the stem,
the shortcut, the norm, the attention, weight standardisation and the head. The flat field names of
resnet-core 0.1 (``norm="group"``, ``bn_eps``, ``se_ratio``, ...) keep working as constructor and ``replace``
keywords, in ``from_dict`` and as read-only attributes, through one alias table (:data:`ALIASES`).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .drop_rates import DROP_FIELDS
from .spec_blocks import check_split_blocks
from .spec_parts import (
    ATTENTIONS,
    BLOCKS,
    DOWNSAMPLES,
    ECA,
    FAMILIES,
    NORMS,
    POOL_PADDINGS,
    POOLINGS,
    SE,
    STEMS,
    Attention,
    Basic,
    BatchNorm,
    Block,
    Bottleneck,
    Classifier,
    EvoNormS0,
    Features,
    FilterResponseNorm,
    Folded,
    GroupNorm,
    Head,
    Norm,
    Res2Net,
    ResNeSt,
    Shortcut,
    SKBasic,
    SKBottleneck,
    SpecError,
    StdConv,
    Stem,
    carry_blocks,
    check_basic,
    expected,
    is_int,
    is_number,
)
from .spec_sknet import canonical_sk_blocks, check_selective_kernel
from .widths import (
    EXPANSION,
    LAYOUT,
    bottleneck_width,
    eca_kernel_size,
    main_widths,
    stage_planes,
    stem_widths,
    width_fields,
)

__all__ = [
    "ALIASES", "ANTI_ALIASES", "ATTENTIONS", "BLOCKS", "DOWNSAMPLES", "ECA", "EXPANSION", "FIELD_NAMES",
    "FLAT_FIELDS", "FORMAT", "FUSED_NORMS",
    "GROUPED_NORMS", "NORMS", "OUTPUT_STRIDES", "POOLINGS", "POOL_PADDINGS", "SE", "STEMS", "STRIDE_BLOCKS",
    "Attention", "Basic", "BatchNorm", "Block", "Bottleneck", "Classifier", "EvoNormS0", "Features",
    "FilterResponseNorm", "Folded", "GroupNorm", "Head", "Norm", "Res2Net", "ResNeSt", "ResNetSpec", "SKBasic",
    "SKBottleneck", "Shortcut", "SpecError", "StdConv", "Stem",
]

ANTI_ALIASES = (None, "avg", "blur", "blur_zero")
OUTPUT_STRIDES = (8, 16, 32)
STRIDE_BLOCKS = ("first", "last")
FUSED_NORMS = ("evo_s0", "frn")  # norms that compute their own nonlinearity (timm's norm-activation layers)
GROUPED_NORMS = ("group", "evo_s0")  # norms over groups of channels: norm_groups must divide every normalised width
FORMAT = 2  # the spec JSON's layout: 1 was 0.1's flat fields (no "format" key), 2 has the sub-specs



@dataclass(frozen=True, init=False)
class ResNetSpec:
    """One member of the ResNet family, independent of any framework.

    Defaults describe torchvision's ResNet-50 (v1.5: stride on the 3x3 conv). The options with parameters
    of their own are sub-specs, each validating its fields (see :mod:`resnet_core.spec_parts`):
    ``block_spec`` (:class:`Basic`, :class:`Bottleneck` with its groups, width per group and stride
    placement; or a tuple of them, one per stage), ``stem_spec`` (:class:`Stem`), ``shortcut_spec``
    (:class:`Shortcut`), ``norm_spec`` (:class:`BatchNorm`, :class:`GroupNorm`, :class:`EvoNormS0`,
    :class:`FilterResponseNorm`; or :class:`Folded`: batch norms folded into the convs, for inference),
    ``attention_spec`` (None, :class:`SE` or :class:`ECA`), ``std_conv_spec``
    (None or :class:`StdConv`) and ``head_spec`` (:class:`Classifier` or :class:`Features`). Two specs are
    equal exactly when they build the same network (``name`` is a label, not compared).

    The other fields: ``base_planes`` is stage 1's base width, doubled per stage, or ``planes`` gives each
    stage's (timm's ``channels``); ``block_widths`` gives every block's main-conv output widths explicitly,
    in network order, replacing the width rule (channel-pruned models); ``reduce_first`` divides the width
    of each block's first conv (SENet-154: 2). ``output_stride`` < 32 replaces the last strides by dilation.
    ``preact`` builds pre-activation (ResNet v2) blocks: norm-ReLU before each conv, a projection shortcut
    fed by the pre-activated input, no norm after the stem and a final norm before the head; there
    ``conv_bias`` puts biases only on convs no norm follows (keras.applications V2). ``stride_block="last"``
    moves each downsampling to the last block of the previous stage, with a 1x1 max-pool shortcut.
    ``anti_alias`` blurs before subsampling (timm's ``aa_layer``: "avg", "blur", "blur_zero").
    ``drop_rate`` (dropout on the pooled features, before the classifier) and ``drop_path_rate`` (stochastic
    depth on each block's residual branch, rising linearly to it over the blocks, as timm's) regularise
    training and act only there (:mod:`resnet_core.drop_rates`). They are plain fields, not a sub-spec: each is
    one number of the whole network that holds for every block type, head and norm (a sub-spec would repeat
    the schedule in each stage's block spec, or the rate in both head kinds), and a spec JSON without them
    (format 2, before they existed) reads as 0.

    The flat field names of resnet-core 0.1 (``block``, ``groups``, ``norm``, ``bn_eps``, ``se_ratio``,
    ``num_classes``, ...) are accepted wherever fields are and read as attributes (:data:`ALIASES`; a
    parameter of an option not chosen reads as its default).

    Raises:
        SpecError: A field holds a value the family cannot express, or no field has the name given.

    Examples:
        The defaults are ResNet-50; a ResNeXt changes the bottleneck's parameters:

        >>> from resnet_core import ResNetSpec
        >>> from resnet_core.spec import Bottleneck, GroupNorm
        >>> ResNetSpec().depth
        50
        >>> resnext = ResNetSpec(block_spec=Bottleneck(groups=32, width_per_group=4), name="my_resnext50")
        >>> resnext == ResNetSpec(groups=32, width_per_group=4)  # 0.1's flat names mean the same
        True
        >>> resnext.block, resnext.groups, resnext.layers, resnext.expansion
        ('bottleneck', 32, (3, 4, 6, 3), 4)
        >>> ResNetSpec(norm="group", norm_groups=16).norm_spec
        GroupNorm(groups=16, eps=1e-05)
        >>> ResNetSpec(block="plain")
        Traceback (most recent call last):
        ...
        resnet_core.spec.SpecError: Invalid ResNetSpec.block: expected one of ('basic', 'bottleneck', ...
    """

    layers: tuple[int, ...] = (3, 4, 6, 3)
    block_spec: Block | tuple[Block, ...] = Bottleneck()
    stem_spec: Stem = Stem()
    shortcut_spec: Shortcut = Shortcut()
    norm_spec: Norm = BatchNorm()
    attention_spec: Attention | None = None
    std_conv_spec: StdConv | None = None
    head_spec: Head = Classifier()
    in_channels: int = 3
    base_planes: int = 64
    planes: tuple[int, ...] | None = None
    block_widths: tuple[tuple[int, ...], ...] | None = None
    reduce_first: int = 1
    output_stride: int = 32
    preact: bool = False
    stride_block: str = "first"
    anti_alias: str | None = None
    conv_bias: bool = False
    zero_init_residual: bool = False
    drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    name: str = field(default="resnet", compare=False)

    def __init__(self, **fields: Any) -> None:
        unknown = [k for k in fields if k not in FIELD_NAMES]
        if unknown:
            raise _unknown(unknown)
        values = {name: fields.get(name, default) for name, default in _FIELDS.items()}
        for name, family in FAMILIES.items():
            flat = {k: v for k, v in fields.items() if ALIASES.get(k) == name}
            if flat:  # flat names change the sub-spec given (or the default) through its flat view
                family.check(name, values[name])
                made = family.make({**family.view(values[name]), **flat})
                values[name] = carry_blocks(values[name], made) if name == "block_spec" else made
        for name, value in values.items():
            object.__setattr__(self, name, value)
        self.__post_init__()

    def __getattr__(self, name: str) -> Any:
        """The flat names of resnet-core 0.1, read off their sub-spec (see :data:`ALIASES`)."""
        holder = ALIASES.get(name)
        if holder is None:
            close = difflib.get_close_matches(name, sorted(FIELD_NAMES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise AttributeError(f"'ResNetSpec' object has no attribute {name!r}{hint}")
        return FAMILIES[holder].view(object.__getattribute__(self, holder))[name]

    def __post_init__(self) -> None:
        # Normalise sequences at the edge (lists from JSON or users become tuples, so specs hash).
        for name in ("layers", "planes", "block_spec"):
            value = getattr(self, name)
            if isinstance(value, Sequence) and not isinstance(value, str):
                object.__setattr__(self, name, tuple(value))
        if isinstance(self.block_widths, Sequence) and not isinstance(self.block_widths, str):
            object.__setattr__(self, "block_widths", tuple(
                tuple(w) if isinstance(w, Sequence) and not isinstance(w, str) else w for w in self.block_widths))
        self._cache_flat()
        self._validate()
        self._normalise()
        self._cache_flat()

    def _cache_flat(self) -> None:
        """Keep the flat names' values beside the fields (read as plain attributes: the plan reads them often)."""
        for name, family in FAMILIES.items():
            value = self.__dict__[name]
            items = value if name == "block_spec" and isinstance(value, tuple) else (value,)
            if all(isinstance(v, family.types) or (v is None and family.optional) for v in items):
                self.__dict__.update(family.view(value))

    def _normalise(self) -> None:
        """One representation per network: a per-stage or per-block field that the single-value fields
        already give becomes None (so a spec read from weights equals the preset it is)."""
        blocks = self.block_spec
        if isinstance(blocks, tuple) and len(set(blocks)) == 1:
            object.__setattr__(self, "block_spec", blocks[0])
        if isinstance(self.norm_spec, Folded):  # every conv a norm followed has a bias: conv_bias says no more
            object.__setattr__(self, "conv_bias", True)
        sk_blocks = canonical_sk_blocks(self)  # SKNet: one (rd_ratio, rd_divisor) per attention width
        if sk_blocks is not None:
            object.__setattr__(self, "block_spec", sk_blocks)
        if self.stem_spec.pool != "max" or not self.preact:  # after a ReLU, zero padding is -inf padding
            object.__setattr__(self, "stem_spec", dataclasses.replace(self.stem_spec, pool_padding="-inf"))
        if self.planes == stage_planes(self.base_planes, len(self.layers)):
            object.__setattr__(self, "planes", None)
        if self.block_widths is not None:  # widths the rule gives: said by the rule's fields
            ends = list(itertools.accumulate(self.layers))
            stages = [(block, self.block_widths[end - depth:end])
                      for block, depth, end in zip(self.stage_block_types, self.layers, ends, strict=True)]
            changes = width_fields(stages, self.groups)
            if changes is not None:
                try:
                    rule = self.replace(**changes)
                except SpecError:  # e.g. a reduce_first the rule needs, refused with preact: stay explicit
                    return
                for name in _FIELDS:
                    object.__setattr__(self, name, getattr(rule, name))
        kernels = self.eca_kernels
        if kernels is not None and kernels == self._derived_eca_kernels():
            object.__setattr__(self, "attention_spec", ECA())

    @property
    def stage_block_types(self) -> tuple[str, ...]:
        """Each stage's block type."""
        return tuple(b.kind for b in self.stage_blocks)

    @property
    def stage_blocks(self) -> tuple[Block, ...]:
        """Each stage's block sub-spec."""
        blocks = self.block_spec
        return blocks if isinstance(blocks, tuple) else (blocks,) * len(self.layers)

    @property
    def stage_base_planes(self) -> tuple[int, ...]:
        """Each stage's base width (planes); a block's output is ``EXPANSION[type]`` times it by the rule."""
        return self.planes if self.planes is not None else stage_planes(self.base_planes, len(self.layers))

    def _rule_widths(self) -> tuple[tuple[int, ...], ...]:
        return tuple(main_widths(block.kind, planes, self.width_per_group, self.groups, self.reduce_first,
                                 getattr(block, "scale", 1))
                     for block, planes, depth in zip(self.stage_blocks, self.stage_base_planes, self.layers,
                                                     strict=True) for _ in range(depth))

    def main_widths(self) -> tuple[tuple[int, ...], ...]:
        """Every block's main-conv output widths, in network order (the last is the block's output)."""
        return self.block_widths if self.block_widths is not None else self._rule_widths()

    def stage_eca_kernels(self) -> tuple[int, ...]:
        """Each stage's ECA kernel size (meaningful with ``attention="eca"``)."""
        kernels = self.eca_kernels
        return kernels if kernels is not None else self._derived_eca_kernels()

    def _derived_eca_kernels(self) -> tuple[int, ...]:
        ends = list(itertools.accumulate(self.layers))
        widths = self.main_widths()
        return tuple(eca_kernel_size(widths[end - 1][-1]) for end in ends)

    def _validate(self) -> None:
        for name, family in FAMILIES.items():
            value = getattr(self, name)
            for item in value if name == "block_spec" and isinstance(value, tuple) else (value,):
                family.check(name, item)
        if not isinstance(self.layers, tuple) or not self.layers:
            raise expected("layers", "a non-empty sequence of stage depths", self.layers)
        if not all(is_int(d) and d > 0 for d in self.layers):
            raise expected("layers", "positive integers (blocks per stage)", self.layers)
        for name in ("in_channels", "base_planes", "reduce_first"):
            value = getattr(self, name)
            if not is_int(value) or value <= 0:
                raise expected(name, "a positive integer", value)
        for name in ("zero_init_residual", "conv_bias", "preact"):
            if not isinstance(getattr(self, name), bool):
                raise expected(name, "a bool", getattr(self, name))
        self._validate_per_stage()
        if self.output_stride not in OUTPUT_STRIDES:
            raise expected("output_stride", f"one of {OUTPUT_STRIDES}", self.output_stride)
        if self.stride_block not in STRIDE_BLOCKS:
            raise expected("stride_block", f"one of {STRIDE_BLOCKS}", self.stride_block)
        if self.stride_block == "last" and self.output_stride != 32:
            raise expected("output_stride", "32 with stride_block='last' (dilation is defined per stage)",
                           self.output_stride)
        if self.norm in FUSED_NORMS and not self.preact:
            raise expected("norm", f"one of ('batch', 'group') with preact=False ({FUSED_NORMS} fuse their "
                           "activation, and a post-activation network has norms without one)", self.norm)
        self._validate_widths()
        self._validate_timm_options()
        self._validate_folded()
        check_selective_kernel(self)  # SKNet's own rules (spec_sknet)
        check_split_blocks(self)  # ResNeSt's and Res2Net's (spec_blocks)
        self._validate_drop_rates()
        if not isinstance(self.name, str) or not self.name:
            raise expected("name", "a non-empty string", self.name)

    def _validate_folded(self) -> None:
        """Folded norms exist only where a batch norm follows a conv: post-activation networks of plain convs."""
        if not isinstance(self.norm_spec, Folded):
            return
        if self.preact:
            raise expected("preact", "False with norm='folded' (pre-activation norms come before the convs, "
                           "so there is no conv to fold them into)", self.preact)
        if self.zero_init_residual:
            raise expected("zero_init_residual", "False with norm='folded' (it zeroes a norm's gamma; a folded "
                           "network has no norm and is made for inference)", self.zero_init_residual)
        if self.std_conv:
            raise expected("std_conv", "False with norm='folded' (a weight-standardised conv would undo the "
                           "folded scale)", self.std_conv, "std_conv_spec")
        other = next((b.kind for b in self.stage_blocks if type(b) not in (Basic, Bottleneck)), None)
        if other is not None:
            raise expected("norm", "a norm kind other than 'folded' with block type "
                           f"{other!r} (its norms are inside its own operator, which folds nothing)", self.norm,
                           "Folded")

    def _validate_drop_rates(self) -> None:
        for name in DROP_FIELDS:
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < 1:
                raise expected(name, "a float in [0, 1) (0: off)", value)
            object.__setattr__(self, name, float(value))  # 0 and 0.0 write the same JSON
        if self.drop_rate and isinstance(self.head_spec, Features) and self.head_spec.pooling is None:
            raise expected("drop_rate", "0.0 without a classifier or global pooling (the dropout acts on the "
                           "pooled features)", self.drop_rate)
        if self.drop_path_rate and sum(self.layers) == 1:
            raise expected("drop_path_rate", "0.0 in a one-block network (the linear rule gives the first block "
                           "rate 0, so it would never act)", self.drop_path_rate)

    def _validate_timm_options(self) -> None:
        if self.anti_alias not in ANTI_ALIASES:
            raise expected("anti_alias", f"one of {ANTI_ALIASES}", self.anti_alias)
        if self.anti_alias is not None and (self.preact or self.stride_in_1x1):
            raise expected("anti_alias", "None with preact or stride_in_1x1 (timm anti-aliases only the strided "
                           "3x3 conv of post-activation blocks)", self.anti_alias)
        if self.replace_stem_pool and (self.preact or self.anti_alias is not None):
            raise expected("replace_stem_pool", "False with preact or with anti_alias", True, "Stem.pool='conv'")
        if self.down_kernel_size != 1 and (self.preact or self.stride_block != "first"):
            raise expected("down_kernel_size", "1 unless downsample='conv' with post-activation blocks striding "
                           "first (timm's downsample_conv)", self.down_kernel_size, "Shortcut.kernel_size")
        if self.reduce_first != 1 and self.preact:
            raise expected("reduce_first", "1 with preact", self.reduce_first)
        # Every stage's blocks reduce (explicit block_widths keep reduce_first at 1: checked with them).
        stages = zip(self.stage_block_types, self.stage_base_planes, strict=True) if self.block_widths is None else ()
        for s, (block, base) in enumerate(stages):
            planes = base if LAYOUT[block] == "basic" else bottleneck_width(base, self.width_per_group, self.groups)
            first = planes // self.reduce_first
            if planes % self.reduce_first or first % self.groups or \
                    (self.norm in GROUPED_NORMS and first % self.norm_groups):
                raise expected("reduce_first", f"a divisor of stage {s + 1}'s width {planes} leaving a multiple of "
                                f"groups={self.groups} (and of norm_groups with a grouped norm)", self.reduce_first)

    def _validate_widths(self) -> None:
        """Widths the plan computes must be at least 1, or the spec would validate and then fail in a framework."""
        if self.block_widths is None:
            self._validate_bottleneck_widths()
        if self.norm in GROUPED_NORMS:
            for where, width in self._normalised_widths():
                if width % self.norm_groups:
                    raise expected("norm_groups", f"a divisor of every normalised width ({where} has {width} "
                                    f"channels with norm={self.norm!r})", self.norm_groups)
        if self.std_conv:  # a 1x1 conv over one channel has one weight per filter: standardised, it is 0
            for where, width in self._normalised_widths():
                if width < 2:
                    raise expected("std_conv", f"False when a width is 1 ({where}: a 1x1 conv over it would have "
                                   "a single weight per filter, which standardises to 0)", self.std_conv)

        if self.std_conv:  # every width but the stem's inner convs' feeds some 1x1 conv
            stem_convs = len(stem_widths(self.stem, self.stem_width))
            for where, width in self._normalised_widths()[stem_convs - 1:]:
                if width == 1:
                    raise expected("std_conv", f"False when a 1x1 conv has one input channel ({where} has 1): "
                                   "standardising a one-element kernel leaves 0, and PyTorch refuses it",
                                    self.std_conv)

    def _validate_per_stage(self) -> None:
        """block_types, planes, block_widths and eca_kernels: one entry per stage (per block), consistent."""
        n = len(self.layers)
        if isinstance(self.block_spec, tuple):
            if len(self.block_spec) != n:
                raise expected("block_types", f"None or one of {BLOCKS} per stage ({n} stages)", self.block_types,
                              "block_spec")
            if len({b for b in self.block_spec if isinstance(b, Bottleneck)}) > 1:
                raise expected("block_spec", "one Bottleneck for every bottleneck stage (groups, width_per_group "
                              "and stride_in_1x1 are the network's)", self.block_spec)
            check_basic(self.block_types, self.groups, self.width_per_group, self.stride_in_1x1)
        if self.planes is not None:
            if not isinstance(self.planes, tuple) or len(self.planes) != n or \
                    not all(is_int(p) and p > 0 for p in self.planes):
                raise expected("planes", f"None or a positive integer per stage ({n} stages)", self.planes)
            if self.planes[0] != self.base_planes:
                raise expected("base_planes", f"stage 1's width planes[0]={self.planes[0]}", self.base_planes)
        if self.block_widths is not None:
            self._validate_block_widths()
        if self.eca_kernels is not None and len(self.eca_kernels) != n:
            raise expected("eca_kernels", f"None or a positive odd integer per stage ({n} stages)", self.eca_kernels,
                           "ECA.kernels")

    def _validate_block_widths(self) -> None:
        types = [b for b, d in zip(self.stage_block_types, self.layers, strict=True) for _ in range(d)]
        lengths = [{"basic": 2, "bottleneck": 3}[LAYOUT[b]] for b in types]
        widths = self.block_widths
        if not isinstance(widths, tuple) or len(widths) != len(types) or not all(
                isinstance(w, tuple) and len(w) == k and all(is_int(c) and c > 0 for c in w)
                for w, k in zip(widths, lengths, strict=True)):
            raise expected("block_widths", f"None or, for each of the {len(types)} blocks, its positive conv "
                           "widths: (conv1, conv2, conv3) per bottleneck, (conv1, conv2) per basic block", widths)
        start = 0
        for s, depth in enumerate(self.layers):
            outs = {w[-1] for w in widths[start:start + depth]}
            if len(outs) > 1:
                raise expected("block_widths", f"one output width per stage (the identity shortcuts add them); "
                                f"stage {s + 1} has {sorted(outs)}", widths)
            start += depth
        for i, w in enumerate(widths):
            if len(w) == 3 and (w[0] % self.groups or w[1] % self.groups):
                raise expected("block_widths", f"widths the 3x3 conv's groups={self.groups} divide (block {i + 1} "
                                f"has conv1, conv2 = {w[0]}, {w[1]})", widths)
        rule = {"reduce_first": 1, "base_planes": 64, "width_per_group": 64, "planes": None}
        changed = {k: getattr(self, k) for k, v in rule.items() if getattr(self, k) != v}
        if changed:
            raise expected("block_widths", f"None with width-rule fields off their defaults {changed} (explicit "
                            f"widths replace the rule: keep {rule})", widths)

    def _normalised_widths(self) -> list[tuple[str, int]]:
        """Every conv's output width, by where it is: each is normalised (after the conv, or before the next
        block or the head in pre-activation networks)."""
        out = [(f"the stem's conv {i + 1}", w) for i, w in enumerate(stem_widths(self.stem, self.stem_width))]
        if self.block_widths is not None:
            return out + [(f"block {i + 1}'s conv{k + 1}", w) for i, widths in enumerate(self.block_widths)
                          for k, w in enumerate(widths)]
        for s, (block, planes) in enumerate(zip(self.stage_block_types, self.stage_base_planes, strict=True)):
            if LAYOUT[block] == "bottleneck":
                out.append((f"stage {s + 1}'s bottleneck width",
                            bottleneck_width(planes, self.width_per_group, self.groups)))
            out.append((f"stage {s + 1}'s {'output' if block == 'bottleneck' else 'width'}",
                        planes * EXPANSION[block]))
        return out

    def _validate_bottleneck_widths(self) -> None:
        for s, (block, planes) in enumerate(zip(self.stage_block_types, self.stage_base_planes, strict=True)):
            width = bottleneck_width(planes, self.width_per_group, self.groups)
            if LAYOUT[block] == "bottleneck" and width < 1:
                where = f"planes[{s}]" if self.planes is not None else f"base_planes*2**{s}"
                raise SpecError(
                    f"Invalid ResNetSpec: stage {s + 1}'s bottleneck width int({where} * width_per_group/64)"
                    f" * groups = int({planes} * {self.width_per_group}/64) * {self.groups} = {width}; a conv needs at "
                    "least 1 channel, so base_planes * width_per_group must be at least 64. Received: "
                    f"base_planes={self.base_planes!r}, width_per_group={self.width_per_group!r}, "
                    f"groups={self.groups!r}")


    @property
    def expansion(self) -> int:
        """Output channels of a block relative to its base width (torchvision's ``expansion``)."""
        return EXPANSION[self.block]

    @property
    def depth(self) -> int:
        """Weighted layers on the main path, the number in a model's name."""
        per_block = {"basic": 2, "bottleneck": 3}
        return 2 + sum(per_block[LAYOUT[b]] * d for b, d in zip(self.stage_block_types, self.layers, strict=True))

    def replace(self, **changes: Any) -> ResNetSpec:
        """A validated copy with ``changes`` applied: fields, sub-specs, or 0.1's flat names.

        Args:
            **changes: Field names (or flat names, see :data:`ALIASES`) and their new values.

        Returns:
            A new spec; this one is unchanged (specs are frozen).

        Raises:
            SpecError: A new value is invalid, or a name is no field (the message names the closest).

        Example:
            >>> from resnet_core import ResNetSpec
            >>> spec = ResNetSpec().replace(num_classes=10)
            >>> spec.num_classes, spec.head_spec, ResNetSpec().num_classes
            (10, Classifier(num_classes=10), 1000)
            >>> ResNetSpec().replace(num_class=10)
            Traceback (most recent call last):
            ...
            resnet_core.spec.SpecError: Unknown ResNetSpec field 'num_class'; did you mean 'num_classes'?
        """
        return ResNetSpec(**{**{name: getattr(self, name) for name in _FIELDS}, **changes})

    def to_dict(self, flat: bool = False) -> dict[str, Any]:
        """The spec as JSON-ready data: format 2 (sub-specs as objects with their ``type``), or with ``flat``
        the 38 field names of resnet-core 0.1 (parameters of options not chosen at their defaults) and the plain
        fields added since (``drop_rate``, ``drop_path_rate``); a block type with parameters of its own (ResNeSt,
        Res2Net, SKNet), which no flat name holds, adds its sub-spec as ``block_spec``."""
        if flat:
            data = {name: getattr(self, name) for name in FLAT_FIELDS}
            if any(type(b) not in (Basic, Bottleneck) for b in self.stage_blocks):
                data["block_spec"] = self.block_spec
            return {**data, "layers": list(self.layers)}
        return {"format": FORMAT, **{name: _json_value(getattr(self, name)) for name in _FIELDS}}

    def to_json(self) -> str:
        """The spec as JSON text (format 2, keys sorted), which :meth:`from_json` reads back.

        Returns:
            One line of JSON holding every field, ``name`` included.

        Example:
            >>> from resnet_core import ResNetSpec
            >>> text = ResNetSpec(block="basic", layers=(2, 2, 2, 2)).to_json()
            >>> text[:60]
            '{"anti_alias": null, "attention_spec": null, "base_planes": '
            >>> ResNetSpec.from_json(text) == ResNetSpec(block="basic", layers=(2, 2, 2, 2))
            True
        """
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ResNetSpec:
        """The spec in ``data``: format 2 (:meth:`to_dict`) or resnet-core 0.1's flat fields (no ``format``).
        ``preprocessing`` (a field before it moved to :class:`~resnet_core.weights_info.WeightsInfo`) is
        dropped, so older files keep loading."""
        data = {k: v for k, v in data.items() if k != "preprocessing"}
        version = data.pop("format", 1)
        if version not in (1, FORMAT):
            raise SpecError(f"Unknown ResNetSpec format {version!r}: this resnet-core reads formats 1 (flat) "
                            f"and {FORMAT}; upgrade resnet-core to read it")
        return cls(**{k: FAMILIES[k].decode(k, v) if k in FAMILIES and k != "block_spec" else
                      _decode_blocks(v) if k == "block_spec" else v for k, v in data.items()})

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


_FIELDS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(ResNetSpec)}
# The one alias table: each flat field name of resnet-core 0.1 -> the sub-spec field that holds it now.
ALIASES: dict[str, str] = {flat: name for name, family in FAMILIES.items() for flat in family.view(_FIELDS[name])}
FLAT_FIELDS = tuple(sorted({*ALIASES, *(name for name in _FIELDS if name not in FAMILIES)}))
FIELD_NAMES = frozenset({*_FIELDS, *ALIASES})  # every name the constructor, replace and from_dict take


def _unknown(names: list[str]) -> SpecError:
    known = sorted(FIELD_NAMES)
    parts = []
    for name in names:
        close = difflib.get_close_matches(str(name), known, n=1)
        parts.append(f"{name!r}" + (f"; did you mean {close[0]!r}?" if close else ""))
    return SpecError(f"Unknown ResNetSpec field {', '.join(parts)}" if len(parts) == 1 else
                     f"Unknown ResNetSpec fields {', '.join(parts)}. Known fields: {sorted(known)}")


def _json_value(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_json_value(v) for v in value]
    return value


def _decode_blocks(value: Any) -> Any:
    family = FAMILIES["block_spec"]
    if isinstance(value, list):
        return tuple(family.decode("block_spec", v) for v in value)
    return family.decode("block_spec", value)
