"""timm.models.resnetv2.ResNetV2 <-> ResNetSpec: pre-activation (``preact=True``) and post-activation networks.

The models built with ``conv_layer=create_conv2d`` and ``norm_layer=BatchNormAct2d`` (resnetv2_18/34/50/
50d/50t/101...) are the spec's pre-activation ResNet: BN-ReLU before each conv, the stride on the
first block's 3x3 conv (basic: conv1), a bare projection conv fed by the pre-activated input, a final
norm. ``BatchNormAct2d`` is a BatchNorm2d with its ReLU inside: its tensors are BatchNorm2d's, and its
``act`` must be a ReLU and its ``drop`` an Identity. The plan's pre-activation names are timm's own
inside a block, so the table only renames the stem, the stages and the classifier.

The classifier is a biased 1x1 Conv2d (``ClassifierHead(use_conv=True)``): its kernel is
(classes, features, 1, 1) where the canonical ``fc.weight`` is (classes, features). A Layout is a
transpose (same rank, values moved, never reshaped), so it cannot drop or add the two unit axes; this
module squeezes them on import and adds them back on export (:func:`_squeeze_fc`, :func:`_unsqueeze_fc`),
after the structure check has proven the kernel is 1x1.

The BiT models (StdConv2d weight standardisation, GroupNormAct, the 'fixed' stem), GroupNormAct,
EvoNorm2dS0 and FilterResponseNormTlu2d norms are the spec's ``std_conv`` and ``norm`` options.
Refused by name: other norm layers, activations other than ReLU, a norm ``drop_layer``, the input-size
dependent 'same' stems and 'same'-padded convs (StdConv2dSame), scaled weight standardisation.

``ResNetV2(preact=False)`` (timm's ViT-hybrid backbones) is the post-activation bottleneck network the
spec already describes with ``preact=False``: a norm-activation after the stem conv, conv-norm-act per
block with ``norm3(apply_act=False)``, the add, then a ReLU, and a normed projection (``apply_act=False``)
in every stage's first block. It computes the same function as timm's ResNet of that spec (the layers
differ only in where the ReLU module sits), so it imports to the same spec; the tables below rename
its modules to torchvision's (:func:`table_for`). Exporting such a spec builds timm's ResNet, unless
only ResNetV2 can build it (``std_conv``, a 7x7 stem other than 64 wide, not four stages, a
``project_first`` that projects a block timm's ResNet would not) or ``to_peer(..., model_class="ResNetV2")``
asks for it.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any, cast

import numpy as np

from ..drop_rates import DROP_FIELDS
from ..name_tables import TORCH_IGNORED, TORCH_KINDS, ModuleRow, Table
from ..plan import (
    AvgPool,
    Conv,
    ConvNorm,
    MaxPool,
    Plan,
    bottleneck_width,
    make_divisible,
    make_plan,
    planes_of,
    width_per_group_of,
)
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo
from . import _timm
from ._common import (
    PER_STAGE_FIELDS,
    check_round_trip,
    check_units,
    match_output_stride,
    named,
    refuse_export,
    stem_counted_output_stride,
    unsupported,
)
from ._timm import PEER, pool_matches, pool_text, pretrained_cfg
from .timm_drop import drop_fields, resnetv2_schedule

MODULES = (
    ModuleRow("stem.conv", "conv1", "module"),  # the 7x7 stem (no norm after it: the first block's norm1 follows)
    ModuleRow("stem.conv1", "conv1.0", "module"),  # the deep stems' Sequential, as timm's resnet.py names it
    ModuleRow("stem.norm1", "conv1.1", "module"),
    ModuleRow("stem.conv2", "conv1.3", "module"),
    ModuleRow("stem.norm2", "conv1.4", "module"),
    ModuleRow("stem.conv3", "conv1.6", "module"),
    # norm1, conv1, norm2, conv2, norm3, conv3, downsample.conv (.pool owns no tensor): the same in both
    ModuleRow("stages.{s}.blocks.{b}.{m:path}", "layer{s+1}.{b}.{m:path}", "module"),
    ModuleRow("norm", "norm", "module"),
    ModuleRow("head.fc", "fc", "module"),  # a 1x1 conv: see the module docstring
)
TABLE = Table(MODULES, TORCH_KINDS, ignored=TORCH_IGNORED)
_BLOCK = "stages.{s}.blocks.{b}"
_LAYER = "layer{s+1}.{b}"


@functools.cache
def _post_table(deep: bool, avg: bool) -> Table:
    """Post-activation (preact=False) names: the stem's and the shortcut's canonical names depend on the
    stem (the last stem norm is bn1) and the shortcut (avg: pool, conv, norm), so one table per pair."""
    stem = (("stem.conv1", "conv1.0"), ("stem.norm1", "conv1.1"), ("stem.conv2", "conv1.3"),
            ("stem.norm2", "conv1.4"), ("stem.conv3", "conv1.6"), ("stem.norm3", "bn1")) if deep else \
        (("stem.conv", "conv1"), ("stem.norm", "bn1"))
    first = 1 if avg else 0
    rows = (*stem, (f"{_BLOCK}.conv{{i}}", f"{_LAYER}.conv{{i}}"), (f"{_BLOCK}.norm{{i}}", f"{_LAYER}.bn{{i}}"),
            (f"{_BLOCK}.downsample.conv", f"{_LAYER}.downsample.{first}"),
            (f"{_BLOCK}.downsample.norm", f"{_LAYER}.downsample.{first + 1}"), ("head.fc", "fc"))
    return Table((ModuleRow(peer, canonical, "module") for peer, canonical in rows), TORCH_KINDS,
                 ignored=TORCH_IGNORED)


def table_for(spec: ResNetSpec) -> Table:
    """The name table of ResNetV2 built for ``spec`` (pre- or post-activation)."""
    return TABLE if spec.preact else _post_table(spec.stem != "7x7", spec.downsample == "avg")


FC_WEIGHT = "head.fc.weight"

STEM_TYPES = {("7x7", "-inf"): "", ("deep", "-inf"): "deep", ("deep_tiered", "-inf"): "tiered",
              ("7x7", "zero"): "fixed", ("deep", "zero"): "deep_fixed"}  # timm has no 'tiered_fixed'
POOLS = {"avg": "avg", "max": "max", "": None}

# Modules a ResNetV2 may hold for a spec to describe it (containers included); anything else is refused.
_ALLOWED = ("ResNetV2", "Sequential", "ResNetStage", "PreActBottleneck", "PreActBasic", "Bottleneck",
            "DownsampleConv", "DownsampleAvg", "BatchNormAct2d", "GroupNormAct", "EvoNorm2dS0", "EvoNorm2dS0a",
            "FilterResponseNormTlu2d", "StdConv2d", "ClassifierHead", "SelectAdaptivePool2d", "Conv2d", "ReLU",
            "Identity", "MaxPool2d", "ConstantPad2d", "AvgPool2d", "AvgPool2dSame", "Flatten", "AdaptiveAvgPool2d",
            "AdaptiveMaxPool2d", "Dropout", "DropPath")  # the last two act only in training
# Named refusals, then where an unexpected module sits -> the timm option that put it there.
_KINDS = {
    "StdConv2dSame": "conv_layer=StdConv2dSame (weight standardisation with 'same' padding, the BiT models)",
    "ScaledStdConv2d": "conv_layer=ScaledStdConv2d (scaled weight standardisation)",
    "Conv2dSame": "conv_layer with padding='same' (Conv2dSame pads by input size)",
    "MaxPool2dSame": "stem_type 'same' / 'deep_same' (a max-pool padded by input size)",
}
_HINTS = (("stem.pool", "stem_type"), ("stem.pad", "stem_type"), (".drop", "norm_layer's drop_layer"),
          ("norm", "norm_layer"), ("conv", "conv_layer"), ("downsample", "avg_down / proj_layer"),
          ("head", "global_pool"))


def accepts(model: object) -> bool:
    module = sys.modules.get("timm.models.resnetv2")  # loaded if such a model exists: nothing is imported
    return module is not None and isinstance(model, module.ResNetV2)


def _hint(path: str) -> str:
    return next((option for key, option in _HINTS if key in path), "a module ResNetSpec has no option for")


def _refusals(model: Any) -> list[str]:
    """What the model uses that ResNetSpec cannot say, one line per kind of problem (not per block)."""
    from timm.layers import BatchNormAct2d, GroupNormAct

    from . import _torch

    modules = dict(model.named_modules())
    acts = [f"{name}.act" for name, m in modules.items() if isinstance(m, (BatchNormAct2d, GroupNormAct))]
    acts += [f"{name}.act3" for name, m in modules.items() if type(m).__name__ == "Bottleneck"]  # after the add
    found: dict[str, list[str]] = {}  # problem -> modules showing it
    refused: list[str] = []  # modules already reported; their children are not
    for name, module in modules.items():
        kind = type(module).__name__
        if name in acts or name.startswith("head.global_pool.") or any(name.startswith(f"{r}.") for r in refused):
            continue  # activations are reported by check_relus, the pooling by its pool_type below
        problem = None
        if kind in _KINDS:
            problem = f"{kind}: {_KINDS[kind]} has no ResNetSpec option"
        elif kind not in _ALLOWED:
            problem = f"{kind}: {_hint(name)} has no ResNetSpec option"
        elif kind in ("BatchNormAct2d", "GroupNormAct") and type(module.drop).__name__ != "Identity":
            problem = (f"a {kind} with drop={type(module.drop).__name__}: norm_layer's drop_layer has no "
                       "ResNetSpec option")
        if problem is not None:
            found.setdefault(problem, []).append(name)
            refused.append(name)
    problems = [f"{names[0]}{f' (+{len(names) - 1} more)' if len(names) > 1 else ''} is {problem}"
                for problem, names in found.items()]
    # apply_act=False leaves an Identity: where that is right, the structure check says
    problems += _torch.check_relus(model, [a for a in acts if type(modules.get(a)).__name__ not in ("NoneType",
                                                                                                   "Identity")])
    pool_type = model.head.global_pool.pool_type
    top = type(model.head.fc).__name__ != "Identity"
    if (top and pool_type != "avg") or pool_type not in POOLS:
        problems.append(f"global_pool={pool_type!r} " + ("with a classifier (ResNetSpec's top average-pools)"
                                                       if top else "(ResNetSpec pools by 'avg', 'max' or not at all)"))
    return problems


def _relu_norms(plan: Plan) -> set[str]:
    """The norms a ReLU follows: timm's norm-activation layers with ``apply_act=True`` (every norm of a
    pre-activation plan; in a post-activation one, all but the last of each block and the projection's)."""
    units = [*plan.stem.units, *(u for b in plan.blocks for u in (*b.main, *([b.shortcut] if b.shortcut else [])))]
    found = {u.norm.name for u in units if isinstance(u, ConvNorm) and u.norm is not None and u.relu}
    found |= {b.pre_norm.name for b in plan.blocks if b.pre_norm is not None}
    return found | ({plan.head.norm.name} if plan.head.norm is not None else set())


def _check(plan: Plan, model: Any) -> list[str]:
    """Every conv and norm, the classifier, the stem pool and the shortcuts of ``plan`` against ``model``."""
    from torch import nn

    from . import _torch

    modules = dict(model.named_modules())
    relu = _relu_norms(plan)
    faults = check_units(plan, table_for(plan.spec), modules, _timm.check_conv,
                         lambda n, m, where: _timm.check_norm(n, m, where, act=True, relu=n.name in relu))
    fc = modules.get("head.fc")
    if plan.head.fc is None:
        faults += [] if type(fc) is nn.Identity else [f"head.fc is {fc!r}, expected Identity (num_classes=0)"]
    else:  # ClassifierHead(use_conv=True): a biased 1x1 conv, checked as the conv it is
        dense = plan.head.fc
        conv = Conv(dense.name, dense.in_features, dense.out_features, kernel_size=1, bias=True)
        faults += _torch.check_conv(conv, fc, "head.fc")
    faults += _check_stem_pool(plan, modules)
    for block in plan.blocks:
        where = f"stages.{block.stage - 1}.blocks.{block.index}.downsample"
        down: Any = modules.get(where)  # a module or None: its class name is tested first
        if block.shortcut is None:
            faults += [] if down is None else [f"{where} is {type(down).__name__}, expected none (identity)"]
            continue
        kind = "DownsampleAvg" if plan.spec.downsample == "avg" else "DownsampleConv"
        if type(down).__name__ != kind:
            faults.append(f"{where} is {type(down).__name__}, expected {kind}")
            continue
        if plan.spec.preact and type(down.norm) is not nn.Identity:  # post-activation: checked as a unit
            faults.append(f"{where}.norm is {type(down.norm).__name__}, expected Identity (preact=True)")
        want = cast("AvgPool | None", block.shortcut_pool)  # DownsampleAvg's pool is an average pool
        if kind == "DownsampleAvg" and not pool_matches(down.pool, want, nn):
            faults.append(f"{where}.pool is {down.pool!r}, expected {pool_text(want)}")
    if not plan.spec.preact and type(model.norm) is not nn.Identity:
        faults.append(f"norm is {type(model.norm).__name__}, expected Identity (preact=False)")
    return faults


def _check_stem_pool(plan: Plan, modules: dict[str, Any]) -> list[str]:
    from torch import nn

    from . import _torch

    pool: Any
    pad: Any
    pool, pad = modules.get("stem.pool"), modules.get("stem.pad")
    want = cast("MaxPool | None", plan.stem.pool)  # preact: no anti-aliasing, so a max-pool stem
    if want is None:
        return [] if type(pool) is nn.Identity and pad is None else \
            [f"stem.pool is {pool!r} (stem.pad {pad!r}), expected Identity (stem_pool=False)"]
    # timm's 'fixed' stems: ConstantPad2d(1, 0.) then MaxPool2d(3, 2). After a ReLU (post-activation stems) zero
    # padding computes -inf padding exactly, and the spec holds that one form ('-inf'): either stem matches it.
    if want.pad_value == 0.0 or (want.nonnegative_input and pad is not None):
        faults = [] if type(pad) is nn.ConstantPad2d and tuple(pad.padding) == (1, 1, 1, 1) and pad.value == 0.0 \
            else [f"stem.pad is {pad!r}, expected ConstantPad2d(1, 0.0) (stem_pool_padding='zero')"]
        m = pool
        ok = type(m) is nn.MaxPool2d and (m.kernel_size, m.stride, m.padding, m.dilation, m.ceil_mode) in (
            (3, 2, 0, 1, False), ((3, 3), (2, 2), (0, 0), (1, 1), False))
        return faults + ([] if ok else [f"stem.pool is {m!r}, expected MaxPool2d(kernel_size=3, stride=2, padding=0)"])
    faults = [] if pad is None else [f"stem.pad is {pad!r}, expected none (stem_pool_padding='-inf')"]
    return faults + _torch.check_maxpool(pool, "stem.pool")


def _squeeze_fc(state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """head.fc's 1x1 conv kernel (classes, features, 1, 1) as the canonical dense (classes, features)."""
    if FC_WEIGHT in state:
        kernel = state[FC_WEIGHT]
        if kernel.shape[2:] != (1, 1):  # the structure check refuses this first; kept as a guard
            raise unsupported(PEER, [f"{FC_WEIGHT} has shape {kernel.shape}, expected a 1x1 kernel"])
        state = {**state, FC_WEIGHT: kernel.reshape(kernel.shape[:2])}
    return state


def _unsqueeze_fc(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The canonical dense (classes, features) as head.fc's 1x1 conv kernel (classes, features, 1, 1)."""
    if FC_WEIGHT in tensors:
        tensors = {**tensors, FC_WEIGHT: tensors[FC_WEIGHT][:, :, None, None]}
    return tensors


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    from torch import nn

    from . import _torch

    blocks = [b for stage in model.stages for b in stage.blocks]
    kinds = {type(b).__name__ for b in blocks}
    preact = not kinds & {"Bottleneck"}  # preact=False builds timm's (post-activation) Bottleneck only
    if len(kinds) > 1 and not preact:
        raise unsupported(PEER, [f"block types {sorted(kinds)}: ResNetV2 mixing pre- and post-activation blocks"])
    stem = model.stem
    deep = hasattr(stem, "conv1")
    # the norm whose class says the spec's norm: the final one (pre-activation), else the stem's last
    norm = model.norm if preact else getattr(stem, "norm3" if deep else "norm", None)
    problems = _refusals(model)
    found = None if norm is None else _timm.norm_kind(norm)
    if found is None and not problems:  # pragma: no cover - _refusals names any other norm class first
        problems.append(f"{'norm' if preact else 'the stem norm'} is {type(norm).__name__}: norm_layer has no "
                        "ResNetSpec option")
    drops, drop_problems = drop_fields(model, blocks, resnetv2_schedule([len(s.blocks) for s in model.stages]),
                                       float32=True)
    problems += drop_problems
    if problems:
        raise unsupported(PEER, problems)

    first = blocks[0]
    bottleneck = type(first).__name__ in ("PreActBottleneck", "Bottleneck")
    if bottleneck:
        width, planes = first.conv2.out_channels, planes_of(first.conv3.out_channels, "bottleneck")
        groups = first.conv2.groups
        width_per_group = width_per_group_of(width, groups, planes)
    else:
        planes, groups, width_per_group = first.conv2.out_channels, 1, 64
    if deep:  # timm's stem_chs is the output width; the spec's stem_width is half of it
        stem_width, last = stem.conv2.out_channels, stem.conv3
        stem_type = "deep" if stem.conv1.out_channels == stem_width else "deep_tiered"
        first_conv = stem.conv1
    else:
        stem_width, stem_type, last = stem.conv.out_channels, "7x7", stem.conv
        first_conv = stem.conv
    top = isinstance(model.head.fc, nn.Conv2d)
    downs = {type(b.downsample).__name__ for b in blocks if b.downsample is not None}
    try:
        spec = ResNetSpec(
            block="bottleneck" if bottleneck else "basic", layers=tuple(len(s.blocks) for s in model.stages),
            groups=groups, width_per_group=width_per_group, num_classes=model.head.fc.out_channels if top else 0,
            include_top=top, pooling=None if top else POOLS[model.head.global_pool.pool_type],
            in_channels=first_conv.in_channels, stem_width=stem_width, base_planes=planes,
            **cast("tuple[str, dict[str, Any]]", found)[1], conv_bias=last.bias is not None, **_std_conv(first_conv),
            stem=stem_type, stem_pool=type(stem.pool) is not nn.Identity,
            downsample="avg" if downs == {"DownsampleAvg"} else "conv", preact=preact,
            stem_pool_padding="zero" if hasattr(stem, "pad") else "-inf",
            # ResNetV2's bottlenecks project every stage's first block; the spec says so only where nothing
            # else would (its basic blocks project only where the width or stride changes)
            project_first=bottleneck and first.downsample is not None
            and last.out_channels == first.conv3.out_channels, **drops,
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    spec = match_output_stride(spec, lambda plan: _check(plan, model), PEER)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    spec = named(spec, cfg.get("architecture") or "resnetv2")
    return spec, table_for(spec).to_canonical(make_plan(spec), _squeeze_fc(_torch.state_numpy(model)), PEER)


def _std_conv(conv: Any) -> dict[str, Any]:
    """The spec's std_conv fields for the stem conv (timm builds every conv with one conv_layer)."""
    from timm.layers import StdConv2d

    return {"std_conv": True, "std_conv_eps": conv.eps} if type(conv) is StdConv2d else {}


def export_problems(spec: ResNetSpec) -> list[str]:
    """What ResNetV2's constructor cannot build exactly (it rounds every width to a multiple of 8)."""
    problems = [f"{f}={getattr(spec, f)!r} (ResNetV2 builds one block type and widths doubled per stage)"
                for f in PER_STAGE_FIELDS if getattr(spec, f) is not None]
    if not spec.preact:  # ResNetV2(preact=False): timm's post-activation Bottleneck, no timm ResNet options
        if spec.block != "bottleneck":
            problems.append("block='basic' with preact=False (ResNetV2 builds post-activation bottlenecks only)")
        for field in ("anti_alias", "replace_stem_pool", "reduce_first", "down_kernel_size"):
            if getattr(spec, field) != getattr(ResNetSpec(), field):
                problems.append(f"{field}={getattr(spec, field)!r} (an option of timm's ResNet, not of ResNetV2)")
    if spec.stride_block != "first":
        problems.append(f"stride_block={spec.stride_block!r} (ResNetV2 strides each stage's first block)")
    if spec.stride_in_1x1:
        problems.append("stride_in_1x1=True (ResNetV2 strides the 3x3 conv)")
    if spec.conv_bias:
        problems.append("conv_bias=True (ResNetV2's convolutions have no bias)")
    if spec.attention is not None:
        problems.append(f"attention={spec.attention!r} (ResNetV2 has no attention module)")
    if spec.groups != 1:
        problems.append(f"groups={spec.groups} (ResNetV2 builds no grouped convolutions)")
    if spec.stem_pool and (spec.stem, spec.stem_pool_padding) not in STEM_TYPES:
        problems.append(f"stem_pool_padding={spec.stem_pool_padding!r} with stem={spec.stem!r} (timm has no "
                        "zero-padded 'tiered' stem_type)")
    stem_out = spec.stem_width if spec.stem == "7x7" else 2 * spec.stem_width
    if make_divisible(stem_out) != stem_out:
        problems.append(f"stem_width={spec.stem_width} (ResNetV2 rounds its stem_chs, {stem_out}, to a multiple of 8)")
    plan = make_plan(spec)
    if spec.block == "bottleneck" and not plan.projections[0]:
        problems.append(f"project_first=False while stage 1's first block keeps its width ({plan.stem.out_channels} "
                        "channels): ResNetV2's bottlenecks project every stage's first block (project_first=True "
                        "builds that)")
    for s in range(1, plan.num_stages + 1):
        first = plan.stage_blocks(s)[0]
        mid = cast(ConvNorm, first.main[0]).conv.out_channels
        if make_divisible(first.out_channels) != first.out_channels or \
                make_divisible(first.out_channels * _bottle_ratio(spec)) != mid:
            problems.append(f"base_planes={spec.base_planes}, width_per_group={spec.width_per_group} (stage {s}: "
                            f"{first.out_channels} channels, {mid} inside the block; ResNetV2 rounds both to a "
                            "multiple of 8)")
            break
    return problems


def _bottle_ratio(spec: ResNetSpec) -> float:
    """ResNetV2's bottle_ratio: the block's inner width over its output width."""
    if spec.block == "basic":
        return 1.0
    return bottleneck_width(spec.base_planes, spec.width_per_group, 1) / (spec.base_planes * spec.expansion)


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None) -> Any:
    """A timm ResNetV2 (``preact`` as the spec's) in eval mode; its ``pretrained_cfg`` carries ``info``."""
    from timm.layers import StdConv2d, create_conv2d
    from timm.models.resnetv2 import ResNetV2
    from torch import nn

    from . import _torch

    refuse_export(spec, PEER, export_problems(spec), norms=("batch", "group", "evo_s0", "frn"), std_conv=True,
                  per_stage=True, drop_rates=DROP_FIELDS)  # export_problems names the per-stage fields
    cfg = pretrained_cfg(spec, info)
    output_stride = stem_counted_output_stride(spec)
    padding = spec.stem_pool_padding if spec.stem_pool else "-inf"
    model = ResNetV2(
        list(spec.layers), channels=make_plan(spec).stage_widths,
        num_classes=spec.num_classes if spec.include_top else 0, in_chans=spec.in_channels,
        global_pool="avg" if spec.include_top else {"avg": "avg", "max": "max", None: ""}[spec.pooling],
        output_stride=output_stride, stem_chs=spec.stem_width if spec.stem == "7x7" else 2 * spec.stem_width,
        stem_type=STEM_TYPES[spec.stem, padding], avg_down=spec.downsample == "avg", preact=spec.preact,
        basic=spec.block == "basic", bottle_ratio=_bottle_ratio(spec), act_layer=nn.ReLU,
        norm_layer=_timm.norm_layer(spec, act=True),
        conv_layer=functools.partial(StdConv2d, eps=spec.std_conv_eps) if spec.std_conv else create_conv2d,
        # ResNetV2's own schedule: the plan's line, computed in float32 (read back by timm_drop)
        drop_rate=spec.drop_rate, drop_path_rate=spec.drop_path_rate,
    )
    if not spec.stem_pool:
        model.stem.pool = nn.Identity()
    model.pretrained_cfg = cfg
    table = table_for(spec)
    _torch.load_state(model, _unsqueeze_fc(table.to_peer(make_plan(spec), weights)), table)
    model.eval()
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
