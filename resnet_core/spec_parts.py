"""The sub-specs of :class:`~resnet_core.spec.ResNetSpec`: each option with its own parameters, validated by itself.

A parameter lives in the option it belongs to (a GroupNorm's group count, an SE module's ratio), so a spec
holds no value without effect and two specs are equal exactly when they build the same network. Each family
also says how it reads and writes the flat field names of resnet-core 0.1 (``norm``, ``bn_eps``, ...):
:data:`FAMILIES`, from which ``ResNetSpec`` derives its one alias table.

A new option is a new frozen dataclass with a ``kind`` and its own ``__post_init__`` checks, added to its
family's tuple of classes (a new block type: :data:`BLOCK_TYPES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, cast

from .errors import ResNetCoreError
from .widths import LAYOUT, tiered_stem_width

STEMS = ("7x7", "deep", "deep_tiered")
STEM_POOLS = ("max", "conv", None)
POOL_PADDINGS = ("-inf", "zero")
POOLINGS = (None, "avg", "max")
DOWNSAMPLES = ("conv", "avg")


class SpecError(ResNetCoreError, ValueError):
    """A spec field holds a value the ResNet family cannot express."""


SpecError.__module__ = "resnet_core.spec"  # its public home (re-exported there and as resnet_core.SpecError)


def expected(flat: str, what: str, received: Any, where: str = "") -> SpecError:
    """The one message shape: the field (its flat name), what is allowed, the value (and the sub-spec field)."""
    at = f" ({where})" if where else ""
    return SpecError(f"Invalid ResNetSpec.{flat}: expected {what}. Received: {flat}={received!r}{at}")


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(flat: str, value: Any, where: str) -> None:
    if not is_int(value) or value <= 0:
        raise expected(flat, "a positive integer", value, where)


def _bool(flat: str, value: Any, where: str) -> None:
    if not isinstance(value, bool):
        raise expected(flat, "a bool", value, where)


def _eps(flat: str, value: Any, where: str) -> None:
    if not is_number(value) or not 0 < value < 1:
        raise expected(flat, "a float in (0, 1)", value, where)


class Part:
    """A sub-spec: ``to_dict`` gives its JSON form, with its class's ``kind`` as ``"type"`` in families of
    several classes (a stem's or a shortcut's kind is a field of its one class)."""

    kind: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        return data if "kind" in data or not self.kind else {"type": self.kind, **data}


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, tuple) else value


# Blocks ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Basic(Part):
    """torchvision's BasicBlock: two 3x3 convs."""

    kind: ClassVar[str] = "basic"


@dataclass(frozen=True)
class Bottleneck(Part):
    """torchvision's Bottleneck: 1x1, 3x3 (``groups`` groups of ``width_per_group`` per 64 planes), 1x1;
    ``stride_in_1x1`` strides the first 1x1 conv (the paper's v1) instead of the 3x3 (v1.5)."""

    kind: ClassVar[str] = "bottleneck"
    groups: int = 1
    width_per_group: int = 64
    stride_in_1x1: bool = False

    def __post_init__(self) -> None:
        _positive_int("groups", self.groups, "Bottleneck.groups")
        _positive_int("width_per_group", self.width_per_group, "Bottleneck.width_per_group")
        _bool("stride_in_1x1", self.stride_in_1x1, "Bottleneck.stride_in_1x1")


def _ratio(flat: str, value: Any, where: str) -> None:
    if not is_number(value) or not 0 < value <= 1:
        raise expected(flat, "a float in (0, 1]", value, where)


@dataclass(frozen=True)
class ResNeSt(Bottleneck):
    """timm's ResNestBottleneck: the 3x3 conv is split attention over ``radix`` splits of each of ``groups``
    cardinal groups (its attention 1x1s ``rd_ratio`` of the radix-wide input, rounded to ``rd_divisor``, at
    least 32); ``avd`` moves a strided block's stride to a 3x3 average pool, before the 3x3 conv with
    ``avd_first``, else after it. ``groups``/``width_per_group`` are timm's cardinality and base_width."""

    kind: ClassVar[str] = "resnest"
    radix: int = 2
    avd: bool = False
    avd_first: bool = False
    rd_ratio: float = 0.25
    rd_divisor: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int("radix", self.radix, "ResNeSt.radix")
        _bool("avd", self.avd, "ResNeSt.avd")
        _bool("avd_first", self.avd_first, "ResNeSt.avd_first")
        _ratio("rd_ratio", self.rd_ratio, "ResNeSt.rd_ratio")
        _positive_int("rd_divisor", self.rd_divisor, "ResNeSt.rd_divisor")
        if self.stride_in_1x1:
            raise expected("stride_in_1x1", "False for ResNeSt blocks (the stride is in the 3x3 or its avd pool)",
                           True, "ResNeSt.stride_in_1x1")


@dataclass(frozen=True)
class Res2Net(Bottleneck):
    """timm's Bottle2neck: the 1x1 conv widens to ``scale`` splits of ``int(planes * width_per_group / 64) *
    groups`` channels; ``scale - 1`` 3x3 convs run as a cascade (each adds the previous output), the last split
    passes (average-pooled in a stage's first block). ``width_per_group`` is timm's base_width (26 for res2net50)."""

    kind: ClassVar[str] = "res2net"
    width_per_group: int = 26
    scale: int = 4

    def __post_init__(self) -> None:
        super().__post_init__()
        _positive_int("scale", self.scale, "Res2Net.scale")
        if self.stride_in_1x1:
            raise expected("stride_in_1x1", "False for Res2Net blocks (the stride is in the 3x3 convs)", True,
                           "Res2Net.stride_in_1x1")


@dataclass(frozen=True)
class _SelectiveKernel:
    """SKNet's selective-kernel conv (timm's SelectiveKernel): one path per kernel size (with ``keep_3x3``,
    3x3 convs dilated to the kernel's reach), each on its share of the channels with ``split_input``, mixed by
    attention over the paths (1x1s reducing by ``rd_ratio``, rounded to ``rd_divisor``)."""

    kernel_sizes: tuple[int, ...] = (3, 5)
    keep_3x3: bool = True
    split_input: bool = True
    rd_ratio: float = 1.0 / 16
    rd_divisor: int = 8

    def _check_sk(self) -> None:
        name = type(self).__name__
        if isinstance(self.kernel_sizes, Sequence) and not isinstance(self.kernel_sizes, str):
            object.__setattr__(self, "kernel_sizes", tuple(self.kernel_sizes))
        if not isinstance(self.kernel_sizes, tuple) or len(self.kernel_sizes) < 2 or not all(
                is_int(k) and k > 1 and k % 2 for k in self.kernel_sizes):
            raise expected("kernel_sizes", "two or more odd kernel sizes above 1", self.kernel_sizes,
                           f"{name}.kernel_sizes")
        _bool("keep_3x3", self.keep_3x3, f"{name}.keep_3x3")
        _bool("split_input", self.split_input, f"{name}.split_input")
        _ratio("rd_ratio", self.rd_ratio, f"{name}.rd_ratio")
        _positive_int("rd_divisor", self.rd_divisor, f"{name}.rd_divisor")


@dataclass(frozen=True)
class SKBasic(Basic, _SelectiveKernel):
    """timm's SelectiveKernelBasic: a selective-kernel 3x3 (it strides), then a plain 3x3."""

    kind: ClassVar[str] = "sk_basic"

    def __post_init__(self) -> None:
        self._check_sk()


@dataclass(frozen=True)
class SKBottleneck(Bottleneck, _SelectiveKernel):
    """timm's SelectiveKernelBottleneck: 1x1, a selective-kernel 3x3 (``groups`` groups; it strides), 1x1."""

    kind: ClassVar[str] = "sk_bottleneck"

    def __post_init__(self) -> None:
        super().__post_init__()
        self._check_sk()
        if self.stride_in_1x1:
            raise expected("stride_in_1x1", "False for selective-kernel blocks", True, "SKBottleneck.stride_in_1x1")


BLOCK_TYPES: tuple[type[Part], ...] = (Basic, Bottleneck, ResNeSt, Res2Net, SKBasic, SKBottleneck)
BLOCKS = tuple(t.kind for t in BLOCK_TYPES)
Block = Basic | Bottleneck  # the new types subclass one of these two (their width layout: see widths.LAYOUT)


# Norms -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchNorm(Part):
    """BatchNorm then ReLU; ``momentum`` in PyTorch's convention (Keras's is ``1 - momentum``)."""

    kind: ClassVar[str] = "batch"
    eps: float = 1e-5
    momentum: float = 0.1

    def __post_init__(self) -> None:
        _eps("bn_eps", self.eps, "BatchNorm.eps")
        if not is_number(self.momentum) or not 0 <= self.momentum <= 1:
            raise expected("bn_momentum", "a float in [0, 1] (PyTorch's convention)", self.momentum,
                           "BatchNorm.momentum")


@dataclass(frozen=True)
class _GroupedNorm(Part):
    """A norm over ``groups`` groups of channels."""

    groups: int = 32
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _positive_int("norm_groups", self.groups, f"{type(self).__name__}.groups")
        _eps("bn_eps", self.eps, f"{type(self).__name__}.eps")


@dataclass(frozen=True)
class GroupNorm(_GroupedNorm):
    """GroupNorm over ``groups`` groups of channels, then ReLU."""

    kind: ClassVar[str] = "group"


@dataclass(frozen=True)
class EvoNormS0(_GroupedNorm):
    """EvoNorm-S0, its activation fused: ``x * sigmoid(v * x) / group_std(x)`` then affine."""

    kind: ClassVar[str] = "evo_s0"


@dataclass(frozen=True)
class FilterResponseNorm(Part):
    """FilterResponseNorm with its TLU: ``max(affine(x / rms(x)), tau)``."""

    kind: ClassVar[str] = "frn"
    eps: float = 1e-5

    def __post_init__(self) -> None:
        _eps("bn_eps", self.eps, "FilterResponseNorm.eps")


@dataclass(frozen=True)
class Folded(Part):
    """Batch norms folded into the convs before them, for inference: each such conv has a bias and no norm
    follows it (the ReLUs stay). What :func:`resnet_core.fold_norms` makes, and what graph optimisers (ONNX
    Runtime's, TensorRT's) leave. It has no parameters: the epsilon and statistics are in the weights."""

    kind: ClassVar[str] = "folded"


NORM_TYPES: tuple[type[Part], ...] = (BatchNorm, GroupNorm, EvoNormS0, FilterResponseNorm, Folded)
NORMS = tuple(t.kind for t in NORM_TYPES)
Norm = BatchNorm | GroupNorm | EvoNormS0 | FilterResponseNorm | Folded


# Attention ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SE(Part):
    """timm's squeeze-and-excitation: channels reduced by ``ratio``, rounded to a multiple of 8."""

    kind: ClassVar[str] = "se"
    ratio: float = 1.0 / 16

    def __post_init__(self) -> None:
        if not is_number(self.ratio) or not 0 < self.ratio <= 1:
            raise expected("se_ratio", "a float in (0, 1]", self.ratio, "SE.ratio")


@dataclass(frozen=True)
class ECA(Part):
    """Efficient channel attention: a 1D conv across the pooled channels, its kernel computed from the
    width, or ``kernels`` (one per stage) where they are not (a pruned model keeps its unpruned kernels)."""

    kind: ClassVar[str] = "eca"
    kernels: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.kernels, Sequence) and not isinstance(self.kernels, str):
            object.__setattr__(self, "kernels", tuple(self.kernels))
        if self.kernels is not None and (not isinstance(self.kernels, tuple) or not all(
                is_int(k) and k > 0 and k % 2 for k in self.kernels)):
            raise expected("eca_kernels", "None or a positive odd integer per stage", self.kernels, "ECA.kernels")


ATTENTION_TYPES: tuple[type[Part], ...] = (SE, ECA)
ATTENTIONS = (None, *(t.kind for t in ATTENTION_TYPES))
Attention = SE | ECA


# Stem, shortcut, head, standardised convs --------------------------------------------------------------------
@dataclass(frozen=True)
class Stem(Part):
    """The stem: a 7x7 conv of ``width`` channels, or timm's three 3x3s ("deep": ``width``, ``width``,
    ``2 * width``; "deep_tiered" narrows the first), then a max-pool ("max", padded with ``pool_padding``),
    a stride-2 3x3 conv, norm and ReLU ("conv": ResNet-RS) or nothing (None)."""

    kind: str = "7x7"  # type: ignore[misc]  # a field here: the one class of its family
    width: int = 64
    pool: str | None = "max"
    pool_padding: str = "-inf"

    def __post_init__(self) -> None:
        if self.kind not in STEMS:
            raise expected("stem", f"one of {STEMS}", self.kind, "Stem.kind")
        _positive_int("stem_width", self.width, "Stem.width")
        if self.kind == "deep_tiered" and tiered_stem_width(self.width) < 1:
            raise expected("stem_width", "at least 4 for the deep_tiered stem (its first conv has "
                           f"3*(stem_width//4) = {tiered_stem_width(self.width)} channels)", self.width, "Stem.width")
        if self.pool not in STEM_POOLS:
            raise expected("stem_pool", f"one of {STEM_POOLS}", self.pool, "Stem.pool")
        if self.pool_padding not in POOL_PADDINGS:
            raise expected("stem_pool_padding", f"one of {POOL_PADDINGS}", self.pool_padding, "Stem.pool_padding")


@dataclass(frozen=True)
class Shortcut(Part):
    """The projection shortcut: a strided ``kernel_size`` conv ("conv"), or timm's "d" average pool then a
    stride-1 1x1 conv ("avg"); ``project_first`` projects every stage's first block even where width and
    stride stay."""

    kind: str = "conv"  # type: ignore[misc]  # a field here: the one class of its family
    kernel_size: int = 1
    project_first: bool = False

    def __post_init__(self) -> None:
        if self.kind not in DOWNSAMPLES:
            raise expected("downsample", f"one of {DOWNSAMPLES}", self.kind, "Shortcut.kind")
        if not is_int(self.kernel_size) or self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise expected("down_kernel_size", "a positive odd integer", self.kernel_size, "Shortcut.kernel_size")
        if self.kernel_size != 1 and self.kind != "conv":
            raise expected("down_kernel_size", "1 unless downsample='conv' (timm's downsample_conv)",
                           self.kernel_size, "Shortcut.kernel_size")
        _bool("project_first", self.project_first, "Shortcut.project_first")


@dataclass(frozen=True)
class Classifier(Part):
    """The head: global average pool, then a linear layer to ``num_classes`` logits."""

    kind: ClassVar[str] = "classifier"
    num_classes: int = 1000

    def __post_init__(self) -> None:
        if not is_int(self.num_classes) or self.num_classes < 1:
            raise expected("num_classes", "a positive integer when include_top=True", self.num_classes,
                           "Classifier.num_classes")


@dataclass(frozen=True)
class Features(Part):
    """No head: the last stage's feature map, globally pooled when ``pooling`` says so ("avg", "max")."""

    kind: ClassVar[str] = "features"
    pooling: str | None = None

    def __post_init__(self) -> None:
        if self.pooling not in POOLINGS:
            raise expected("pooling", f"one of {POOLINGS}", self.pooling, "Features.pooling")


HEAD_TYPES: tuple[type[Part], ...] = (Classifier, Features)
Head = Classifier | Features


@dataclass(frozen=True)
class StdConv(Part):
    """Weight standardisation (timm's StdConv2d): every kernel, per output channel, to zero mean and unit
    variance with ``eps`` in the forward; the stored kernels stay the trained ones (BiT)."""

    eps: float = 1e-6

    def __post_init__(self) -> None:
        _eps("std_conv_eps", self.eps, "StdConv.eps")


# Flat names (resnet-core 0.1's fields) ------------------------------------------------------------------------
@dataclass(frozen=True)
class Family:
    """One sub-spec field: its classes, and its flat names read (``view``) and written (``make``: the full flat
    view, some names changed, to the sub-spec)."""

    types: tuple[type[Part], ...]
    optional: bool
    view: Callable[[Any], dict[str, Any]]
    make: Callable[[dict[str, Any]], Any]
    per_stage: bool = False  # may also be a tuple of sub-specs, one per stage (block types)

    def check(self, field: str, value: Any) -> None:
        items = tuple(value) if self.per_stage and isinstance(value, (tuple, list)) and value else (value,)
        if not all(isinstance(v, self.types) or (v is None and self.optional) for v in items):
            names = " or ".join([*(t.__name__ for t in self.types), *(["None"] if self.optional else [])])
            raise expected(field, names, value)

    def decode(self, field: str, data: Any) -> Any:
        """The sub-spec in its JSON form (``to_dict``'s)."""
        if data is None or not isinstance(data, Mapping):
            return data
        data = dict(data)
        if len(self.types) == 1:
            cls = self.types[0]
        else:
            kind = data.pop("type", None)
            cls = next((t for t in self.types if t.kind == kind), None)  # type: ignore[assignment]
            if cls is None:
                raise expected(field, f"a type among {[t.kind for t in self.types]}", kind, f"{field}.type")
        try:
            return cls(**data)
        except TypeError as exc:
            raise SpecError(f"Invalid ResNetSpec.{field}: {cls.__name__} {exc}. Received: {field}={data!r}") from None


def check_basic(types: Sequence[str], groups: Any, width_per_group: Any, stride_in_1x1: Any) -> None:
    """Basic blocks have no grouped 3x3 and no 1x1 conv: the bottleneck's parameters at their defaults."""
    types = [LAYOUT[t] for t in types]
    if "basic" in types and (groups != 1 or width_per_group != 64):
        raise SpecError("Invalid ResNetSpec: the basic block allows only groups=1 and width_per_group=64. "
                        f"Received: groups={groups!r}, width_per_group={width_per_group!r}")
    if stride_in_1x1 and "basic" in types:
        raise expected("stride_in_1x1", "False for the basic block (it has no 1x1 conv)", stride_in_1x1)


def _view_blocks(value: Block | tuple[Block, ...]) -> dict[str, Any]:
    blocks = value if isinstance(value, tuple) else (value,)
    bottleneck = next((b for b in blocks if isinstance(b, Bottleneck)), Bottleneck())
    return {"block": blocks[0].kind, "block_types": tuple(b.kind for b in blocks) if isinstance(value, tuple) else None,
            "groups": bottleneck.groups, "width_per_group": bottleneck.width_per_group,
            "stride_in_1x1": bottleneck.stride_in_1x1}


def _make_blocks(flat: dict[str, Any]) -> Block | tuple[Block, ...]:
    block, types = flat["block"], flat["block_types"]
    if types is not None:
        if isinstance(types, str) or not isinstance(types, Sequence) or not types or \
                any(t not in BLOCKS for t in types):
            raise expected("block_types", f"None or one of {BLOCKS} per stage", types)
        types = tuple(types)
        if block != types[0]:
            raise expected("block", f"stage 1's type block_types[0]={types[0]!r}", block)
    elif block not in BLOCKS:
        raise expected("block", f"one of {BLOCKS}", block)
    kinds = types if types is not None else (block,)
    check_basic(kinds, flat["groups"], flat["width_per_group"], flat["stride_in_1x1"])
    classes = {t.kind: t for t in BLOCK_TYPES}
    made = tuple(classes[k]() if issubclass(classes[k], Basic) else
                 classes[k](groups=flat["groups"], width_per_group=flat["width_per_group"],  # type: ignore[call-arg]
                            stride_in_1x1=flat["stride_in_1x1"]) for k in kinds)
    return cast(tuple[Block, ...], made) if types is not None else cast(Block, made[0])


def carry_blocks(current: Any, made: Any) -> Any:
    """``made`` (a block sub-spec from flat names) keeping the other parameters of ``current`` where a stage's
    type is unchanged: ``replace(groups=...)`` on a ResNeSt spec keeps its radix."""
    made_all = made if isinstance(made, tuple) else (made,)
    current_all = current if isinstance(current, tuple) else (current,) * len(made_all)
    flat = ("groups", "width_per_group", "stride_in_1x1")
    kept = tuple(m if type(c) is not type(m) else
                 dataclasses.replace(c, **{k: getattr(m, k) for k in flat}) if isinstance(m, Bottleneck) else c
                 for m, c in zip(made_all, current_all, strict=False))
    return kept if isinstance(made, tuple) else kept[0]


def _view_norm(norm: Norm) -> dict[str, Any]:
    return {"norm": norm.kind, "bn_eps": getattr(norm, "eps", BatchNorm.eps),  # Folded has no epsilon
            "bn_momentum": getattr(norm, "momentum", BatchNorm.momentum),
            "norm_groups": getattr(norm, "groups", _GroupedNorm.groups)}


def _make_norm(flat: dict[str, Any]) -> Norm:
    kind, eps = flat["norm"], flat["bn_eps"]
    if kind not in NORMS:
        raise expected("norm", f"one of {NORMS}", kind)
    # every flat value given is checked, whether or not the norm chosen takes it (as 0.1 did)
    made: dict[str, Norm] = {"batch": BatchNorm(eps, flat["bn_momentum"]), "group": GroupNorm(flat["norm_groups"], eps)}
    if kind == "folded":
        return Folded()
    return made[kind] if kind in made else EvoNormS0(flat["norm_groups"], eps) if kind == "evo_s0" else \
        FilterResponseNorm(eps)


def _view_attention(attention: Attention | None) -> dict[str, Any]:
    return {"attention": None if attention is None else attention.kind,
            "se_ratio": getattr(attention, "ratio", SE.ratio), "eca_kernels": getattr(attention, "kernels", None)}


def _make_attention(flat: dict[str, Any]) -> Attention | None:
    kind, se = flat["attention"], SE(flat["se_ratio"])  # the ratio is checked with or without SE (as in 0.1)
    if kind != "eca" and flat["eca_kernels"] is not None:
        raise expected("eca_kernels", "None without attention='eca'", flat["eca_kernels"])
    if kind == "se":
        return se
    if kind == "eca":
        return ECA(flat["eca_kernels"])
    if kind is not None:
        raise expected("attention", f"one of {ATTENTIONS}", kind)
    return None


def _view_stem(stem: Stem) -> dict[str, Any]:
    return {"stem": stem.kind, "stem_width": stem.width, "stem_pool": stem.pool is not None,
            "replace_stem_pool": stem.pool == "conv", "stem_pool_padding": stem.pool_padding}


def _make_stem(flat: dict[str, Any]) -> Stem:
    _bool("stem_pool", flat["stem_pool"], "Stem.pool")
    _bool("replace_stem_pool", flat["replace_stem_pool"], "Stem.pool")
    if flat["replace_stem_pool"] and not flat["stem_pool"]:
        raise expected("replace_stem_pool", "False without stem_pool", True, "Stem.pool")
    pool = ("conv" if flat["replace_stem_pool"] else "max") if flat["stem_pool"] else None
    return Stem(flat["stem"], flat["stem_width"], pool, flat["stem_pool_padding"])


def _view_shortcut(shortcut: Shortcut) -> dict[str, Any]:
    return {"downsample": shortcut.kind, "down_kernel_size": shortcut.kernel_size,
            "project_first": shortcut.project_first}


def _make_shortcut(flat: dict[str, Any]) -> Shortcut:
    return Shortcut(flat["downsample"], flat["down_kernel_size"], flat["project_first"])


def _view_head(head: Head) -> dict[str, Any]:
    return {"include_top": isinstance(head, Classifier), "num_classes": getattr(head, "num_classes", 1000),
            "pooling": getattr(head, "pooling", None)}


def _make_head(flat: dict[str, Any]) -> Head:
    _bool("include_top", flat["include_top"], "head_spec")
    if not flat["include_top"]:
        if not is_int(flat["num_classes"]) or flat["num_classes"] < 0:  # checked without a classifier too
            raise expected("num_classes", "a non-negative integer", flat["num_classes"])
        return Features(flat["pooling"])
    if flat["pooling"] is not None:
        raise expected("pooling", f"None when include_top=True (the head always average-pools; {POOLINGS} "
                       "without it)", flat["pooling"])
    return Classifier(flat["num_classes"])


def _view_std_conv(std: StdConv | None) -> dict[str, Any]:
    return {"std_conv": std is not None, "std_conv_eps": StdConv.eps if std is None else std.eps}


def _make_std_conv(flat: dict[str, Any]) -> StdConv | None:
    _bool("std_conv", flat["std_conv"], "std_conv_spec")
    std = StdConv(flat["std_conv_eps"])  # checked with or without standardised convs (as in 0.1)
    return std if flat["std_conv"] else None


# sub-spec field -> its family; each view's keys are the flat names it answers for.
FAMILIES: dict[str, Family] = {
    "block_spec": Family(BLOCK_TYPES, False, _view_blocks, _make_blocks, per_stage=True),
    "stem_spec": Family((Stem,), False, _view_stem, _make_stem),
    "shortcut_spec": Family((Shortcut,), False, _view_shortcut, _make_shortcut),
    "norm_spec": Family(NORM_TYPES, False, _view_norm, _make_norm),
    "attention_spec": Family(ATTENTION_TYPES, True, _view_attention, _make_attention),
    "std_conv_spec": Family((StdConv,), True, _view_std_conv, _make_std_conv),
    "head_spec": Family(HEAD_TYPES, False, _view_head, _make_head),
}
