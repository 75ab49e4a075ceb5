"""What timm's two ResNet families (timm_peer's ResNet, timm_resnetv2's ResNetV2) share.

Kept apart so that timm_peer can dispatch to timm_resnetv2 without the two importing each other.
"""

from __future__ import annotations

import functools
from typing import Any

from ..drop_rates import DROP_FIELDS
from ..plan import AvgPool, Conv, Norm
from ..spec import ResNetSpec
from ..weights_info import WeightsInfo, WeightsInfoError, from_timm_cfg, to_timm_cfg
from ._common import refuse_export

PEER = "timm"

def info_of(model: Any) -> WeightsInfo:
    """The trained-with record in a timm model's ``pretrained_cfg`` (ResNet and ResNetV2 alike)."""
    return from_timm_cfg(getattr(model, "pretrained_cfg", None) or {})


def pretrained_cfg(spec: ResNetSpec, info: WeightsInfo | None) -> dict[str, Any]:
    """The ``pretrained_cfg`` a timm model built by to_model carries for ``info`` ("caffe" is refused)."""
    try:
        # input_size: timm's default for its ResNets when the record has none (timm's savers need one)
        return {"architecture": spec.name, "num_classes": spec.num_classes if spec.include_top else 0,
                "input_size": (spec.in_channels, 224, 224), **to_timm_cfg(info or WeightsInfo())}
    except WeightsInfoError as exc:
        # only the record is at fault here
        refuse_export(spec, PEER, [str(exc)], per_stage=True, blocks=None, drop_rates=DROP_FIELDS)
        raise  # pragma: no cover - refuse_export raised


def pool_text(pool: AvgPool | None) -> str:
    return "Identity" if pool is None else f"{pool.mode} average pool, stride {pool.stride}"


def pool_matches(module: Any, pool: AvgPool | None, nn: Any) -> bool:
    """Whether a timm shortcut pool module is the plan's ``shortcut_pool`` (None: an Identity)."""
    kind = type(module).__name__
    if pool is None:
        return kind == "Identity"
    size = module.kernel_size if isinstance(module.kernel_size, tuple) else (module.kernel_size,) * 2
    stride = module.stride if isinstance(module.stride, tuple) else (module.stride,) * 2
    if size != (2, 2) or stride != (pool.stride,) * 2 or getattr(module, "padding", 0) not in (0, (0, 0)):
        return False
    if pool.mode == "same":
        return kind == "AvgPool2dSame"  # pads explicitly with zeros, counted in the mean
    return type(module) is nn.AvgPool2d and module.ceil_mode and not module.count_include_pad


# timm's norm and conv layers against the plan's Norm / Conv entries: which timm class computes each
# ResNetSpec.norm (with or without its activation inside), which fields must agree, and how each is
# built on export. ResNet (post-activation) uses the plain norms, ResNetV2 the norm-activation ones.


def norm_classes(kind: str, act: bool) -> tuple[type, ...]:
    """The timm classes computing norm ``kind``; ``act``: the activation is inside (ResNetV2's norm_layer)."""
    from timm.layers import (
        BatchNormAct2d,
        EvoNorm2dS0,
        EvoNorm2dS0a,
        FilterResponseNormTlu2d,
        GroupNorm,
        GroupNormAct,
    )
    from torch import nn

    if kind == "batch":
        return (BatchNormAct2d,) if act else (nn.BatchNorm2d,)
    if kind == "group":
        return (GroupNormAct,) if act else (GroupNorm, nn.GroupNorm)
    if kind == "evo_s0":  # S0a divides after the gate: the same operations in the same order
        return (EvoNorm2dS0, EvoNorm2dS0a)
    return (FilterResponseNormTlu2d,)


def norm_kind(module: Any) -> tuple[str, dict[str, Any]] | None:
    """``ResNetSpec.norm`` and its fields (norm_groups, bn_eps, bn_momentum) for a timm norm module."""
    for kind in ("batch", "group", "evo_s0", "frn"):
        if type(module) in norm_classes(kind, act=False) + norm_classes(kind, act=True):
            fields: dict[str, Any] = {"norm": kind, "bn_eps": float(module.eps)}
            if kind == "batch":
                fields["bn_momentum"] = module.momentum
            if kind in ("group", "evo_s0"):
                fields["norm_groups"] = module.num_groups if kind == "group" else module.groups
            return kind, fields
    return None


def check_norm(n: Norm, module: Any, where: str, act: bool = False, relu: bool = True) -> list[str]:
    """A timm norm's class and fields against the plan's; ``act``: a norm-activation layer (ResNetV2),
    whose activation is a ReLU where ``relu`` (the plan's ReLU after that norm), else off (apply_act=False)."""
    from torch import nn

    from . import _torch

    classes = norm_classes(n.kind, act)
    if n.kind == "batch":
        faults = _torch.check_norm(n, module, where, classes[0])
    elif module is None:
        return [f"{where} is missing"]
    elif type(module) not in classes:
        return [f"{where} is {type(module).__name__}, expected {classes[0].__name__} (norm_layer)"]
    else:
        m = module
        channels = m.num_channels if n.kind == "group" else m.weight.shape[0]
        groups = {"group": getattr(m, "num_groups", None), "evo_s0": getattr(m, "groups", None)}.get(n.kind, 1)
        faults = [f"{where}.{k}={have} (spec: {want})" for k, have, want in (
            ("channels", channels, n.channels), ("groups", groups, n.groups), ("eps", m.eps, n.eps)) if have != want]
        if n.kind == "group" and not m.affine:
            faults.append(f"{where} has affine=False")
        extra = {"evo_s0": "v", "frn": "tau"}.get(n.kind)
        if extra and getattr(m, extra, None) is None:
            faults.append(f"{where} has no {extra} (apply_act=False): its activation is off")
        if n.kind == "frn" and not m.rms:
            faults.append(f"{where}.rms=False (spec: FilterResponseNorm divides by the root mean square)")
    if type(module) in classes and hasattr(module, "drop"):  # BatchNormAct2d / GroupNormAct
        if relu and type(module.act) is not nn.ReLU:
            faults.append(f"{where}.act is {type(module.act).__name__}, expected ReLU (apply_act=True, act_layer=ReLU)")
        elif not relu and type(module.act) is not nn.Identity:
            faults.append(f"{where}.act is {type(module.act).__name__}, expected Identity (apply_act=False)")
        if type(module.drop) is not nn.Identity:
            faults.append(f"{where}.drop is {type(module.drop).__name__}, expected Identity")
    return faults


def check_conv(conv: Conv, module: Any, where: str) -> list[str]:
    """A conv, or timm's StdConv2d (weight standardisation with the plan's epsilon)."""
    from timm.layers import StdConv2d

    from . import _torch

    if conv.standardize_eps is None:
        return _torch.check_conv(conv, module, where)
    faults = _torch.check_conv(conv, module, where, StdConv2d)
    if type(module) is StdConv2d and module.eps != conv.standardize_eps:
        faults.append(f"{where}.eps={module.eps} (spec: std_conv_eps={conv.standardize_eps})")
    return faults


def norm_layer(spec: ResNetSpec, act: bool) -> Any:
    """timm's ``norm_layer`` argument building the spec's norms (norm-activation layers when ``act``)."""
    cls = norm_classes(spec.norm, act)[0]
    if spec.norm == "batch":
        return functools.partial(cls, eps=spec.bn_eps, momentum=spec.bn_momentum)
    if spec.norm == "group":
        return functools.partial(cls, num_groups=spec.norm_groups, eps=spec.bn_eps)
    if spec.norm == "evo_s0":
        return functools.partial(cls, groups=spec.norm_groups, eps=spec.bn_eps)
    return functools.partial(cls, eps=spec.bn_eps)
