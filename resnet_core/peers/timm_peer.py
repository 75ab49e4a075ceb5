"""timm.models.resnet.ResNet <-> ResNetSpec: stems, "d" shortcuts, SE and output stride included.

timm keeps torchvision's names for the shared parts and the plan uses timm's for the rest, so the
table is the identity. What timm can build but ResNetSpec cannot (anti-aliasing, other attention or
activation layers, replace_stem_pool, block_reduce_first, down_kernel_size...) is refused by name.
Pre-activation models (timm.models.resnetv2.ResNetV2, specs with ``preact``) go to timm_resnetv2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..name_tables import TORCH_IGNORED, TORCH_KINDS, ModuleRow, Table
from ..plan import Plan, make_plan, planes_of, stage_planes, width_per_group_of
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo
from . import timm_resnetv2
from ._common import (
    check_round_trip,
    match_output_stride,
    named,
    refuse_export,
    se_ratio_for,
    stem_counted_output_stride,
    unsupported,
)
from ._timm import PEER, pool_matches, pool_text, pretrained_cfg
from ._timm import info_of as info_of  # noqa: F401 - the peer's record reader, for peers.peer_info

MODULES = (ModuleRow("{m:path}", "{m:path}", "module"),)
TABLE = Table(MODULES, TORCH_KINDS, ignored=TORCH_IGNORED)

STEM_TYPES = {"7x7": "", "deep": "deep", "deep_tiered": "deep_tiered"}

# Leaf modules a timm ResNet may hold for a spec to describe it; anything else is refused.
_ALLOWED = ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d", "AvgPool2dSame", "Identity", "Linear",
            "Flatten", "AdaptiveAvgPool2d", "AdaptiveMaxPool2d", "Sigmoid",
            "DropBlock2d", "DropPath", "Dropout")  # the last three act only in training
# Where an unexpected module sits -> the timm option that put it there.
_HINTS = ((".aa", "aa_layer (anti-aliasing)"), (".se", "attn_layer"), ("maxpool", "replace_stem_pool or aa_layer"),
          ("act", "act_layer"), ("bn", "norm_layer"), ("downsample", "norm_layer or down_kernel_size"),
          ("global_pool", "global_pool"))


def accepts(model: object) -> bool:
    module = sys.modules.get("timm.models.resnet")  # loaded if such a model exists: nothing is imported
    return (module is not None and isinstance(model, module.ResNet)) or timm_resnetv2.accepts(model)


def _hint(path: str) -> str:
    return next((option for key, option in _HINTS if key in path), "a module ResNetSpec has no option for")


def _refusals(model: Any, activations: set[str]) -> list[str]:
    """What the model uses that ResNetSpec cannot say, one line per kind of problem (not per block)."""
    from torch import nn

    found: dict[str, list[str]] = {}  # problem -> modules showing it
    refused: list[str] = []  # modules already reported; their children are not
    for name, module in model.named_modules():
        kind = type(module).__name__
        if name in activations or any(name.startswith(f"{r}.") for r in refused):
            continue  # activations are reported by check_relus
        problem = None
        if name == "maxpool" and kind not in ("MaxPool2d", "Identity", "Sequential"):
            problem = f"{kind}: aa_layer (anti-aliasing) has no ResNetSpec option"
        elif name == "maxpool" and kind == "Sequential":
            option = "replace_stem_pool=True" if any(isinstance(m, nn.Conv2d) for m in module) else "aa_layer"
            problem = f"a Sequential: {option} has no ResNetSpec option"
        elif name.endswith(".aa") and kind != "Identity":
            problem = f"{kind}: aa_layer (anti-aliasing) has no ResNetSpec option"
        elif name.endswith(".se") and kind != "SEModule":
            problem = (f"{kind}: attn_layer={kind} is not expressible (ResNetSpec.attention supports only None or "
                       "'se', timm's SEModule)")
        elif kind == "SEModule" and (module.add_maxpool or type(module.bn) is not nn.Identity
                                     or module.fc1.bias is None or type(module.act) is not nn.ReLU
                                     or type(module.gate).__name__ != "Sigmoid"):
            problem = ("an SEModule variant (add_maxpool, norm_layer, bias=False, act_layer or gate_layer): "
                       "ResNetSpec's SE is biased conv, ReLU, conv, sigmoid")
        elif not list(module.children()) and kind not in _ALLOWED:
            problem = f"{kind}: {_hint(name)} has no ResNetSpec option"
        if problem is not None:
            found.setdefault(problem, []).append(name)
            refused.append(name)
    problems = [f"{names[0]}{f' (+{len(names) - 1} more)' if len(names) > 1 else ''} is {problem}"
                for problem, names in found.items()]
    for block in (b for stage in _stages(model) for b in stage):
        if block.conv1.out_channels != block.conv2.out_channels:
            problems.append(f"{block.conv1.out_channels} != {block.conv2.out_channels} channels after a block's "
                            "first conv: block_reduce_first has no ResNetSpec option")
            break
    for block in (b for stage in _stages(model) for b in stage):
        down = block.downsample
        if down is not None and (len(down) not in (2, 3) or down[-2].kernel_size != (1, 1)):
            problems.append(f"downsample {down!r} (down_kernel_size > 1) has no ResNetSpec option")
            break
    return problems


def _stages(model: Any) -> list[Any]:
    return [getattr(model, f"layer{i}") for i in range(1, 5)]


def _check_pools(plan: Plan, model: Any) -> list[str]:
    """Shortcut pools and the stem pool, which own no tensors, against the plan."""
    from torch import nn

    from . import _torch

    modules = dict(model.named_modules())
    faults = _torch.check_maxpool(model.maxpool, "maxpool") if plan.stem.pool is not None else []
    for block in plan.blocks:
        if block.shortcut is None or plan.spec.downsample != "avg":
            continue
        where = f"{block.name}.downsample.0"
        m, want = modules.get(where), block.shortcut_pool
        faults += [f"{where} is {m!r}, expected {pool_text(want)}"] if not pool_matches(m, want, nn) else []
    return faults


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    if timm_resnetv2.accepts(model):
        return timm_resnetv2.from_model(model)
    from timm.models.resnet import Bottleneck
    from torch import nn

    from . import _torch

    stages = _stages(model)
    relus = ["act1", "conv1.2", "conv1.5"] + [f"layer{s}.{i}.act{k}" for s in range(1, 5)
                                             for i in range(len(stages[s - 1])) for k in (1, 2, 3)]
    problems = _refusals(model, set(relus)) + _torch.check_relus(model, relus)
    top = isinstance(model.fc, nn.Linear)
    pool_type = model.global_pool.pool_type
    pools = {"avg": "avg", "max": "max", "": None}
    if (top and pool_type != "avg") or pool_type not in pools:
        problems.append(f"global_pool={pool_type!r} " + ("with a classifier (ResNetSpec's top average-pools)"
                                                       if top else "(ResNetSpec pools by 'avg', 'max' or not at all)"))
    if problems:
        raise unsupported(PEER, problems)

    first = stages[0][0]
    bottleneck = isinstance(first, Bottleneck)
    if bottleneck:
        width, planes = first.conv2.out_channels, planes_of(first.conv3.out_channels, "bottleneck")
        groups = first.conv2.groups
        width_per_group = width_per_group_of(width, groups, planes)
    else:
        planes, groups, width_per_group = first.conv2.out_channels, 1, 64
    deep = isinstance(model.conv1, nn.Sequential)
    stem_conv = model.conv1[0] if deep else model.conv1
    if deep:
        stem_width = model.conv1[3].out_channels
        stem = "deep" if model.conv1[0].out_channels == stem_width else "deep_tiered"
    else:
        stem_width, stem = model.conv1.out_channels, "7x7"
    blocks = [b for stage in stages for b in stage]
    downs = {len(b.downsample) for b in blocks if b.downsample is not None}
    ses = [(b.se.fc1.in_channels, b.se.fc1.out_channels) for b in blocks if b.se is not None]
    if ses and len(ses) != len(blocks):
        raise unsupported(PEER, ["squeeze-excitation in some blocks only (ResNetSpec.attention applies to all)"])
    bn = model.bn1
    try:
        spec = ResNetSpec(
            block="bottleneck" if bottleneck else "basic", layers=tuple(len(s) for s in stages), groups=groups,
            width_per_group=width_per_group, num_classes=model.fc.out_features if top else 0, include_top=top,
            pooling=None if top else pools[pool_type], in_channels=stem_conv.in_channels, stem_width=stem_width,
            base_planes=planes, bn_eps=bn.eps, bn_momentum=bn.momentum,
            stride_in_1x1=bottleneck and tuple(stages[1][0].conv1.stride) != (1, 1),
            conv_bias=stem_conv.bias is not None, stem=stem, stem_pool=not isinstance(model.maxpool, nn.Identity),
            downsample="avg" if downs == {3} else "conv", attention="se" if ses else None,
            se_ratio=se_ratio_for(ses, PEER) if ses else 1.0 / 16,
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    spec = match_output_stride(
        spec, lambda plan: _torch.check_plan(plan, TABLE, model) + _check_pools(plan, model), PEER)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    spec = named(spec, cfg.get("architecture") or "resnet")
    return spec, TABLE.to_canonical(make_plan(spec), _torch.state_numpy(model), PEER)


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None) -> Any:
    """A timm ResNet in eval mode; its ``pretrained_cfg`` carries ``info`` (mean/std, input size...)."""
    if spec.preact:
        return timm_resnetv2.to_model(spec, weights, info)
    from timm.layers import SEModule
    from timm.models.resnet import BasicBlock, Bottleneck, ResNet
    from torch import nn

    from . import _torch

    problems = []
    if len(spec.layers) != 4:
        problems.append(f"layers={spec.layers} (timm's ResNet runs exactly four stages)")
    if spec.stem == "7x7" and spec.stem_width != 64:
        problems.append(f"stem_width={spec.stem_width} with the 7x7 stem (timm fixes it at 64)")
    if spec.stride_in_1x1:
        problems.append("stride_in_1x1=True (timm strides the 3x3 conv)")
    if spec.conv_bias:
        problems.append("conv_bias=True (timm's convolutions have no bias)")
    refuse_export(spec, PEER, problems)
    cfg = pretrained_cfg(spec, info)
    block_args = {}
    if spec.attention == "se":
        block_args["attn_layer"] = functools.partial(SEModule, rd_ratio=spec.se_ratio)
    model = ResNet(
        Bottleneck if spec.block == "bottleneck" else BasicBlock, list(spec.layers),
        num_classes=spec.num_classes if spec.include_top else 0, in_chans=spec.in_channels,
        output_stride=stem_counted_output_stride(spec),
        global_pool="avg" if spec.include_top else {"avg": "avg", "max": "max", None: ""}[spec.pooling],
        cardinality=spec.groups, base_width=spec.width_per_group, stem_width=spec.stem_width,
        stem_type=STEM_TYPES[spec.stem], avg_down=spec.downsample == "avg",
        channels=stage_planes(spec.base_planes, 4),
        norm_layer=functools.partial(nn.BatchNorm2d, eps=spec.bn_eps, momentum=spec.bn_momentum),
        zero_init_last=spec.zero_init_residual, block_args=block_args,
    )
    if not spec.stem_pool:
        model.maxpool = nn.Identity()
    model.pretrained_cfg = cfg
    _torch.load_state(model, TABLE.to_peer(make_plan(spec), weights), TABLE)
    model.eval()
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
