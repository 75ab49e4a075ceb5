"""torchvision.models.ResNet <-> ResNetSpec. Its state_dict names are the canonical names, one for one."""

from __future__ import annotations

import functools
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..name_tables import TORCH_IGNORED, TORCH_KINDS, ModuleRow, Table
from ..plan import make_plan, planes_of
from ..spec import ResNetSpec, SpecError
from ..weights_info import WeightsInfo
from ._common import check_round_trip, match_output_stride, named, refuse_export, unsupported

PEER = "torchvision"

# Identity: canonical names were chosen to be torchvision's.
MODULES = (ModuleRow("{m:path}", "{m:path}", "module"),)
TABLE = Table(MODULES, TORCH_KINDS, ignored=TORCH_IGNORED)

# replace_stride_with_dilation (stages 2..4) for each output stride.
_DILATION = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}




def accepts(model: object) -> bool:
    module = sys.modules.get("torchvision.models.resnet")  # loaded if such a model exists: nothing is imported
    return module is not None and isinstance(model, module.ResNet)


def from_model(model: Any) -> tuple[ResNetSpec, dict[str, np.ndarray]]:
    from torch import nn
    from torchvision.models.resnet import BasicBlock, Bottleneck

    from . import _torch

    problems = []
    allowed = (nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.Linear, nn.Identity)
    for name, module in model.named_modules():
        if not list(module.children()) and type(module) not in allowed:
            problems.append(f"module {name} is {type(module).__name__} (norm_layer or a replaced module)")
    stages = [getattr(model, f"layer{i}") for i in range(1, 5)]
    kinds = {type(b) for stage in stages for b in stage}
    if kinds not in ({BasicBlock}, {Bottleneck}):
        problems.append(f"blocks of type {sorted(k.__name__ for k in kinds)}; expected torchvision's BasicBlock or "
                        "Bottleneck throughout")
    relus = ["relu"] + [f"layer{s}.{i}.relu" for s in range(1, 5) for i in range(len(stages[s - 1]))]
    problems += _torch.check_relus(model, relus)
    if type(model.avgpool) is not nn.AdaptiveAvgPool2d or model.avgpool.output_size not in (1, (1, 1)):
        problems.append(f"avgpool is {model.avgpool!r}; expected AdaptiveAvgPool2d(1)")
    stem_pool = not isinstance(model.maxpool, nn.Identity)
    if stem_pool:
        problems += _torch.check_maxpool(model.maxpool, "maxpool")
    top = isinstance(model.fc, nn.Linear)
    if problems:
        raise unsupported(PEER, problems)

    first = stages[0][0]
    bottleneck = isinstance(first, Bottleneck)
    planes = planes_of(first.conv3.out_channels, "bottleneck") if bottleneck else first.conv2.out_channels
    bn = model.bn1
    try:
        spec = ResNetSpec(
            block="bottleneck" if bottleneck else "basic", layers=tuple(len(s) for s in stages),
            groups=model.groups, width_per_group=model.base_width, num_classes=model.fc.out_features if top else 0,
            include_top=top, pooling=None if top else "avg", in_channels=model.conv1.in_channels,
            stem_width=model.conv1.out_channels, base_planes=planes, bn_eps=bn.eps, bn_momentum=bn.momentum,
            stride_in_1x1=bottleneck and tuple(stages[1][0].conv1.stride) != (1, 1),
            conv_bias=model.conv1.bias is not None, stem="7x7", stem_pool=stem_pool,
        )
    except SpecError as exc:
        raise unsupported(PEER, [str(exc)]) from None
    spec = match_output_stride(spec, lambda plan: _torch.check_plan(plan, TABLE, model), PEER)
    spec = named(spec, "resnet")
    return spec, TABLE.to_canonical(make_plan(spec), _torch.state_numpy(model), PEER)


def info_of(model: Any) -> WeightsInfo:
    """A live torchvision model records nothing of its weights; they take ImageNet mean/std."""
    return WeightsInfo()


def to_model(spec: ResNetSpec, weights: Mapping[str, Any], info: WeightsInfo | None = None) -> Any:
    """A torchvision ResNet in eval mode; a headless spec gets ``fc = Identity()`` (pooled features out)."""
    import torchvision
    from torch import nn

    from . import _torch

    problems = []
    fixed = dict(stem="7x7", stem_width=64, base_planes=64, in_channels=3, conv_bias=False, stride_in_1x1=False,
                 downsample="conv", attention=None)
    problems += [f"{k}={getattr(spec, k)!r} (torchvision has only {k}={v!r})" for k, v in fixed.items()
                 if getattr(spec, k) != v]
    if len(spec.layers) != 4:
        problems.append(f"layers={spec.layers} (torchvision builds exactly four stages)")
    if not spec.include_top and spec.pooling != "avg":
        problems.append(f"pooling={spec.pooling!r} without a top (torchvision's head average-pools)")
    if spec.block == "basic" and spec.output_stride != 32:
        problems.append(f"output_stride={spec.output_stride} with the basic block (torchvision's BasicBlock "
                        "refuses dilation)")
    refuse_export(spec, PEER, problems)
    block = torchvision.models.resnet.Bottleneck if spec.block == "bottleneck" else torchvision.models.resnet.BasicBlock
    model = torchvision.models.ResNet(
        block, list(spec.layers), num_classes=spec.num_classes if spec.include_top else 1000,
        zero_init_residual=spec.zero_init_residual, groups=spec.groups, width_per_group=spec.width_per_group,
        replace_stride_with_dilation=_DILATION[spec.output_stride],
        norm_layer=functools.partial(nn.BatchNorm2d, eps=spec.bn_eps, momentum=spec.bn_momentum),
    )
    if not spec.include_top:
        model.fc = nn.Identity()
    if not spec.stem_pool:
        model.maxpool = nn.Identity()
    _torch.load_state(model, TABLE.to_peer(make_plan(spec), weights), TABLE)
    model.eval()
    check_round_trip(spec, from_model(model)[0], PEER)
    return model
